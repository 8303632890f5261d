"""CHAT_RATE_LIMIT_PER_MINUTE, counted where the user's messages all pass: its owner.

Every message of a user reaches the one instance that owns the user (a lease,
:mod:`exobrain.cluster`), so the owner counts them in memory, with no round
trip to Redis on the way to each turn. A user that moves to another instance
(its owner stopped or lost the lease) starts that minute afresh there: a
bounded leniency, at most one more minute's worth per move.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable


class MessageRates:
    """Fixed one-minute windows (as a clock shows them), per user."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.time) -> None:
        self._limit, self._clock = per_minute, clock
        self._window = -1
        self._counts: dict[uuid.UUID, int] = {}

    def count(self, user_id: uuid.UUID) -> int:
        """Count one message; 0 if it is within the limit, else the seconds until the next
        window (the ``Retry-After``). Refused messages count too, as a retry loop should."""
        now = self._clock()
        window = int(now // 60)
        if window != self._window:  # a new minute: every user starts again, memory with them
            self._window, self._counts = window, {}
        count = self._counts[user_id] = self._counts.get(user_id, 0) + 1
        return 0 if count <= self._limit else max(1, 60 - int(now) % 60)
