"""What a SessionActor writes for readers on other instances, and reads back when it
takes a user over: the chat log (``exobrain.cluster``, on JetStream, DESIGN.md §10).

The session depends only on this protocol, so it knows nothing of NATS.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .stream import Item, StreamEvent, StreamStarted, TurnOutcome


@dataclass(frozen=True, slots=True)
class Orphan:
    """A turn of the user's that its previous owner left unfinished, as the log has it."""

    started: StreamStarted
    events: tuple[StreamEvent, ...]
    outcome: TurnOutcome | None


class EventLog(Protocol):
    def write(
        self, user_id: uuid.UUID, stream_id: uuid.UUID, entries: Sequence[Item | TurnOutcome]
    ) -> None:
        """Queue entries of one stream, in order; callable from any thread, never blocks."""

    async def orphans(self, user_id: uuid.UUID) -> list[Orphan]:
        """The user's unfinished turns; on the loop, by the instance that now owns the user."""
