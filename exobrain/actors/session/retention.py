"""One cap in bytes on what every session's streams keep in memory, for the whole process.

Each SessionActor runs on its own thread and owns its streams; each stream
reports what it weighs through its :class:`Share` of the process's one
:class:`StreamBudget`, whose lock makes the sum exact across threads. When the
sum passes the cap, the budget evicts the oldest finished streams, whichever
session holds them: it forgets their shares at once and calls their
``evict``, which asks the owning session to let the stream go (on the
session's own thread). Their readers then read them from the chat log, like
those of a stream dropped for its age. Running streams count but are never
evicted, so they alone may exceed the cap.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable


class Share:
    """One stream's part of the budget; its budget's lock guards ``nbytes`` and ``released``."""

    __slots__ = ("_budget", "evict", "nbytes", "released")

    def __init__(self, budget: StreamBudget, evict: Callable[[], None]) -> None:
        self._budget = budget
        #: Called, from whichever thread made the budget overflow, once the stream is evicted.
        self.evict = evict
        self.nbytes = 0
        self.released = False

    def resize(self, nbytes: int, *, finished: bool = False) -> None:
        """The stream weighs ``nbytes`` now; ``finished``: it may be evicted from now on."""
        self._budget.resize(self, nbytes, finished=finished)

    def release(self) -> None:
        """The stream has left memory (idempotent)."""
        self._budget.release(self)


class StreamBudget:
    """What the process's streams retain, at most ``max_bytes`` of it finished streams."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._total = 0
        self._finished: OrderedDict[Share, None] = OrderedDict()  # the oldest first

    @property
    def retained_bytes(self) -> int:
        return self._total

    def share(self, evict: Callable[[], None]) -> Share:
        return Share(self, evict)

    def resize(self, share: Share, nbytes: int, *, finished: bool = False) -> None:
        with self._lock:
            if share.released:
                return
            self._total += nbytes - share.nbytes
            share.nbytes = nbytes
            if finished and share not in self._finished:
                self._finished[share] = None
            evicted = self._evict_over_cap()
        for share_evicted in evicted:  # outside the lock: it tells an actor
            share_evicted.evict()

    def release(self, share: Share) -> None:
        with self._lock:
            if not share.released:
                self._forget(share)
                self._finished.pop(share, None)

    def _evict_over_cap(self) -> list[Share]:
        evicted = []
        while self._total > self.max_bytes and self._finished:
            share, _ = self._finished.popitem(last=False)
            self._forget(share)
            evicted.append(share)
        return evicted

    def _forget(self, share: Share) -> None:
        share.released = True
        self._total -= share.nbytes
