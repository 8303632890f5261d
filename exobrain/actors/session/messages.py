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
    """Manager: the user's session actor for this ownership ``epoch``, started (and rebuilt
    from PostgreSQL) if needed; one of an older epoch is replaced. ``inherited``: the user's
    last owner may have left turns unfinished, which the session takes over from the log."""

    user_id: uuid.UUID
    epoch: int
    inherited: bool = False


@dataclass(frozen=True, slots=True)
class RunningSession:
    """Manager: the user's session actor if one runs here, else None (starts nothing)."""

    user_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class DropSession:
    """Manager: this instance lost the user's lease; stop the session without waiting."""

    user_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class SendMessage:
    """Store the user's message durably, then queue a turn answering it."""

    client_message_id: uuid.UUID
    text: str


@dataclass(frozen=True, slots=True)
class Accepted:
    stream_id: uuid.UUID
    journal_reference: str
    #: True when this client_message_id was sent before: nothing new was started.
    duplicate: bool
    #: False for a duplicate whose stream this session never had (an earlier owner's).
    held: bool = True


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
class AttachTo:
    """Manager: ``sink``, a connection of the user's, follows every stream the user starts.

    The manager keeps the attachment across the user's sessions (passivated,
    crashed, new) and hands it to each; nothing needs a session to stay alive.
    """

    user_id: uuid.UUID
    sink: Subscription


@dataclass(frozen=True, slots=True)
class DetachFrom:
    user_id: uuid.UUID
    sink: Subscription


@dataclass(frozen=True, slots=True)
class Attach:
    """From the manager: follow from now on; the streams under way are announced to ``sink``."""

    sink: Subscription


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
class Evicted:
    """From the process's stream budget: this finished stream must leave memory."""

    stream_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class StopSessions:
    """Manager: stop every session, each after storing its running turn, then let every
    attached connection go (shutdown drains)."""


@dataclass(frozen=True, slots=True)
class Tick:
    """Periodic: expire finished streams, passivate when idle."""


class StreamNotFound(LookupError):
    """No stream with that id belongs to this user (or it expired)."""


class TurnRejected(RuntimeError):
    """Too many turns waiting for this user."""


class NotOwner(RuntimeError):
    """This session's instance no longer owns the user: ask the owner instead."""
