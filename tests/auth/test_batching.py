"""Batched lookups: one round for concurrent callers, never a round older than the caller."""

from __future__ import annotations

import asyncio

import pytest

from exobrain.auth import Batcher


class Store:
    """A key-value store whose fetches are recorded and can be held mid-flight."""

    def __init__(self, values: dict[str, int]) -> None:
        self.values = values
        self.rounds: list[list[str]] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.release.set()
        self.failure: Exception | None = None

    async def fetch(self, keys: list[str]) -> dict[str, int]:
        self.rounds.append(keys)
        snapshot = {key: self.values[key] for key in keys if key in self.values}
        self.started.set()
        await self.release.wait()
        if self.failure is not None:
            raise self.failure
        return snapshot


async def test_concurrent_lookups_share_one_round_of_distinct_keys() -> None:
    store = Store({"a": 1, "b": 2})
    batcher = Batcher(store.fetch, default=None)
    results = await asyncio.gather(*(batcher.get(key) for key in ["a", "b", "a", "missing"]))
    assert results == [1, 2, 1, None]
    assert store.rounds == [["a", "b", "missing"]]


async def test_a_lookup_made_during_a_round_waits_for_a_fresh_one() -> None:
    store = Store({"a": 1})
    store.release.clear()
    batcher = Batcher(store.fetch, default=None)
    early = batcher.get("a")
    await store.started.wait()  # the first round has read its snapshot
    store.values["a"] = 2  # e.g. a login revoked just after the round started
    late = batcher.get("a")
    store.release.set()
    assert (await early, await late) == (1, 2)
    assert store.rounds == [["a"], ["a"]]


async def test_a_failure_reaches_its_round_only() -> None:
    store = Store({"a": 1})
    store.failure = ConnectionError("down")
    batcher = Batcher(store.fetch, default=None)
    results = await asyncio.gather(batcher.get("a"), batcher.get("a"), return_exceptions=True)
    assert [type(result) for result in results] == [ConnectionError, ConnectionError]
    store.failure = None
    assert await batcher.get("a") == 1


async def test_a_cancelled_caller_leaves_the_others_waiting() -> None:
    store = Store({"a": 1})
    store.release.clear()
    batcher = Batcher(store.fetch, default=None)
    gone, staying = batcher.get("a"), batcher.get("a")
    gone.cancel()
    store.release.set()
    assert await staying == 1
    with pytest.raises(asyncio.CancelledError):
        await gone
