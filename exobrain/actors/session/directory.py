"""The loop's copy of which session runs for which user, kept by the SessionManager.

A command for a user's session would otherwise ask the manager for the
session first: two more thread hand-offs on every chat request. The manager
tells the loop of every session it starts (its ref and ownership epoch) and
ends, in order, so the loop can address the session directly. A stale entry
is harmless: an entry of another epoch is not used, and a session that has
stopped is not alive; both send the caller to the manager, as before.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

import pykka


class Running(NamedTuple):
    ref: pykka.ActorRef[Any]
    epoch: int


class SessionDirectory:
    """On the loop: the running session of each user, as the manager last told it."""

    def __init__(self, changed: Callable[[uuid.UUID, bool], None] = lambda user, alive: None):
        self._running: dict[uuid.UUID, Running] = {}
        #: Also told of every session that starts or ends (the leases count them).
        self._changed = changed

    def update(self, user_id: uuid.UUID, running: Running | None) -> None:
        """The manager started ``running`` for the user, or (None) its session ended."""
        if running is None:
            self._running.pop(user_id, None)
        else:
            self._running[user_id] = running
        self._changed(user_id, running is not None)

    def find(self, user_id: uuid.UUID, epoch: int) -> pykka.ActorRef[Any] | None:
        """The user's live session of ``epoch``, if the manager said it runs."""
        running = self._running.get(user_id)
        if running is None or running.epoch != epoch or not running.ref.is_alive():
            return None
        return running.ref
