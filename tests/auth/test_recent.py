"""Answers remembered for a fixed time: the bound on what a cached user row may miss."""

from __future__ import annotations

from exobrain.auth import Batcher, Recent


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_an_answer_is_reused_for_ttl_seconds_from_when_its_lookup_started() -> None:
    clock, asked, rows = Clock(), [], {"ada": "Ada"}

    async def lookup(keys: list[str]) -> dict[str, str]:
        asked.extend(keys)
        clock.now += 0.4  # the lookup itself takes time: the answer is as old as its start
        return {key: rows[key] for key in keys if key in rows}

    recent = Recent(Batcher(lookup, default=""), ttl=1.0, clock=clock)
    assert await recent.get("ada") == "Ada"
    del rows["ada"]  # deleted behind the cache's back
    clock.now = 100.99
    assert await recent.get("ada") == "Ada"  # within 1 s of the lookup's start
    assert asked == ["ada"]
    clock.now = 101.0
    assert await recent.get("ada") == ""  # the bound is over: looked up again
    assert asked == ["ada", "ada"]


async def test_capacity_drops_the_oldest_answer() -> None:
    asked: list[int] = []

    async def lookup(keys: list[int]) -> dict[int, int]:
        asked.extend(keys)
        return {key: key * 10 for key in keys}

    recent = Recent(Batcher(lookup, default=0), ttl=60.0, capacity=2)
    assert [await recent.get(key) for key in (1, 2, 3, 2, 1)] == [10, 20, 30, 20, 10]
    assert asked == [1, 2, 3, 1]  # 1 was the oldest when 3 came in
