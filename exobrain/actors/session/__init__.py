"""Chat sessions: one SessionActor per active user under a SessionManager."""

from .actor import SessionActor, SessionLimits, stream_id_for, today
from .manager import SessionManager
from .messages import (
    Accepted,
    AttachTo,
    CancelTurn,
    DetachFrom,
    SendMessage,
    SessionFor,
    StopSessions,
    StreamNotFound,
    Subscribe,
    Subscribed,
    Tick,
    TurnRejected,
    Unsubscribe,
)
from .stream import (
    ActiveStream,
    Item,
    SessionEnded,
    StreamEvent,
    StreamStarted,
    SubscriberTooSlow,
    Subscription,
)
from .turn import Agent

__all__ = [
    "Accepted",
    "ActiveStream",
    "Agent",
    "AttachTo",
    "CancelTurn",
    "DetachFrom",
    "Item",
    "SendMessage",
    "SessionActor",
    "SessionEnded",
    "SessionFor",
    "SessionLimits",
    "SessionManager",
    "StopSessions",
    "StreamEvent",
    "StreamNotFound",
    "StreamStarted",
    "Subscribe",
    "Subscribed",
    "SubscriberTooSlow",
    "Subscription",
    "Tick",
    "TurnRejected",
    "Unsubscribe",
    "stream_id_for",
    "today",
]
