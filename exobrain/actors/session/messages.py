"""Messages of the SessionManager and the SessionActors: facts and commands, immutable."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from exobrain.agent.events import Event

if TYPE_CHECKING:
    from .stream import Subscription


@dataclass(frozen=True, slots=True)
class SessionFor:
    """Manager: the user's session actor, started (and rebuilt from PostgreSQL) if needed."""

    user_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class SendMessage:
    """Store the user's message durably, then queue a turn answering it.

    ``sink``, the sender's inbox, follows the new stream even if it is not
    attached (yet) to this session.
    """

    client_message_id: uuid.UUID
    text: str
    sink: Subscription | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    stream_id: uuid.UUID
    journal_reference: str
    #: True when this client_message_id was sent before: nothing new was started.
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Subscribe:
    """Follow a stream: its events after ``after_seq``, then live ones, are pushed to ``sink``."""

    stream_id: uuid.UUID
    after_seq: int
    sink: Subscription


@dataclass(frozen=True, slots=True)
class Subscribed:
    """``finished``: the stream has ended, nothing follows what was pushed."""

    last_seq: int
    finished: bool


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    stream_id: uuid.UUID
    sink: Subscription


@dataclass(frozen=True, slots=True)
class Attach:
    """A connection of the user's: it follows every stream started from now on.

    The reply lists the streams already under way (running or waiting), which
    the connection may join with :class:`Subscribe`.
    """

    sink: Subscription


@dataclass(frozen=True, slots=True)
class ActiveStream:
    stream_id: uuid.UUID
    last_seq: int


@dataclass(frozen=True, slots=True)
class Detach:
    sink: Subscription


@dataclass(frozen=True, slots=True)
class CancelTurn:
    """Stop the stream's turn; the reply says whether it was still running or waiting."""

    stream_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class TurnEvents:
    """From the running turn on the loop: events in the order they happened."""

    stream_id: uuid.UUID
    events: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class TurnFinished:
    """From the running turn: the answer is stored; ``reason`` is completed|cancelled|error."""

    stream_id: uuid.UUID
    reason: str
    error: str | None
    answer: str


@dataclass(frozen=True, slots=True)
class StopSessions:
    """Manager: stop every session, each after storing its running turn (shutdown drains)."""


@dataclass(frozen=True, slots=True)
class Tick:
    """Periodic: expire finished streams, passivate when idle."""


class StreamNotFound(LookupError):
    """No stream with that id belongs to this user (or it expired)."""


class TurnRejected(RuntimeError):
    """Too many turns waiting for this user."""
