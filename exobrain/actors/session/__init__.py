"""Chat sessions: one SessionActor per active user under a SessionManager."""

from .actor import SessionActor, SessionLimits, stream_id_for, today
from .manager import SessionManager
from .messages import (
    Accepted,
    Backlog,
    CancelTurn,
    SendMessage,
    SessionFor,
    StreamNotFound,
    Subscribe,
    Tick,
    TurnRejected,
    Unsubscribe,
)
from .stream import StreamEvent, Subscription
from .turn import Agent

__all__ = [
    "Accepted",
    "Agent",
    "Backlog",
    "CancelTurn",
    "SendMessage",
    "SessionActor",
    "SessionFor",
    "SessionLimits",
    "SessionManager",
    "StreamEvent",
    "StreamNotFound",
    "Subscribe",
    "Subscription",
    "Tick",
    "TurnRejected",
    "Unsubscribe",
    "stream_id_for",
    "today",
]
