"""Lookups remembered for a short, fixed time: the bound on how stale an answer may be.

For the hottest reads (a cached journal page), reading the user's row on every
request costs more than the page itself. The row only tells whether the user
still exists (and their name): rows are deleted and renamed rarely and outside
the request path, so remembering the answer for ``ttl`` seconds bounds what a
deletion may miss, while logout and revocation, which live in Redis, are still
checked on every request. Expiry is per key; a miss goes to the batched lookup.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from .batching import Batcher

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Recent(Generic[K, V]):
    """``lookup``'s answers, each reused for ``ttl`` seconds; at most ``capacity`` kept."""

    def __init__(
        self,
        lookup: Batcher[K, V],
        ttl: float,
        capacity: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._capacity = capacity
        self._clock = clock
        self._answers: dict[K, tuple[V, float]] = {}  # key → answer, read before this time

    async def get(self, key: K) -> V:
        """The answer to ``key`` from a lookup that started at most ``ttl`` seconds ago."""
        answer = self._answers.get(key)
        if answer is not None and self._clock() < answer[1]:
            return answer[0]
        started = self._clock()
        value = await self._lookup.get(key)
        self._answers.pop(key, None)
        if len(self._answers) >= self._capacity:
            del self._answers[next(iter(self._answers))]  # the oldest
        self._answers[key] = (value, started + self._ttl)
        return value
