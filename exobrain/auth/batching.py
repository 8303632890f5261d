"""Lookups that concurrent requests share: one round trip answers every key asked meanwhile.

Each lookup is answered by a round that *starts after it was asked*: while a
round is in flight, new keys wait for the next one. So a batched check is as
fresh as a check of its own (a login revoked or a user deleted before the
request arrived is seen as such), yet under load hundreds of requests cost one
query instead of hundreds. One round is in flight at a time; a lone request
pays one round trip, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterator, Mapping
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

#: Fetches the values of a round's distinct keys; a key it leaves out gets the default.
Fetch = Callable[[list[K]], Awaitable[Mapping[K, V]]]
#: The callers of one round, by key.
Round = dict[K, list[asyncio.Future[V]]]


class Batcher(Generic[K, V]):
    def __init__(self, fetch: Fetch[K, V], default: V) -> None:
        self._fetch = fetch
        self._default = default
        self._waiting: Round[K, V] = {}
        self._rounds: asyncio.Task[None] | None = None

    def get(self, key: K) -> asyncio.Future[V]:
        """The value of ``key`` from the next round to start; await it.

        Every caller has a future of its own, so one that is cancelled leaves the
        others waiting for the same key untouched.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V] = loop.create_future()
        self._waiting.setdefault(key, []).append(future)
        if self._rounds is None:
            self._rounds = loop.create_task(self._run())
        return future

    async def _run(self) -> None:
        round_: Round[K, V] = {}
        try:
            while self._waiting:
                round_, self._waiting = self._waiting, {}
                try:
                    found = await self._fetch(list(round_))
                except Exception as exc:  # every waiter's to handle, as its own query's would be
                    for _, future in _undone(round_):
                        future.set_exception(exc)
                else:
                    for key, future in _undone(round_):
                        future.set_result(found.get(key, self._default))
        finally:  # cancelled (the loop is closing): nobody is left waiting for ever
            self._rounds = None
            left, self._waiting = self._waiting, {}
            for waiting in (round_, left):
                for _, future in _undone(waiting):
                    future.cancel()


def _undone(round_: Round[K, V]) -> Iterator[tuple[K, asyncio.Future[V]]]:
    """The round's futures still waiting: a cancelled caller's is done already."""
    for key, futures in round_.items():
        for future in futures:
            if not future.done():
                yield key, future
