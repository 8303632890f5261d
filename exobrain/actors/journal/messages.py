"""Commands the JournalActor accepts and the facts it replies and announces."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal

Role = Literal["user", "assistant", "system", "tool"]
_ROLES = frozenset(("user", "assistant", "system", "tool"))
_REFERENCE = re.compile(r"^\d{4}/\d{2}/\d{2}$")


@dataclass(frozen=True, slots=True)
class NewToolCall:
    tool_call_id: str
    title: str
    description: str = ""
    response: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class NewMessage:
    """One message to store; invalid values fail here, at the caller, not in a batch."""

    role: Role
    content: str
    client_message_id: uuid.UUID | None = None
    metadata: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    tool_calls: tuple[NewToolCall, ...] = ()

    def __post_init__(self) -> None:
        if self.role not in _ROLES:
            raise ValueError(f"role must be one of {sorted(_ROLES)}, not {self.role!r}")
        if not isinstance(self.content, str):
            raise TypeError("content must be a string")
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))


@dataclass(frozen=True, slots=True)
class AppendMessages:
    """Store ``messages`` in ``user_id``'s journal ``reference``, atomically, in order.

    The reply is a receipt (a LoopFuture) that completes after COMMIT with one
    :class:`StoredMessage` per message.
    """

    user_id: uuid.UUID
    reference: str
    messages: tuple[NewMessage, ...]
    #: The writer's ownership epoch of the user (chat sessions): refused once it is stale.
    epoch: int | None = None

    def __post_init__(self) -> None:
        if not _REFERENCE.match(self.reference):
            raise ValueError(f"reference must be YYYY/MM/DD, not {self.reference!r}")
        if not self.messages:
            raise ValueError("nothing to append")


class Fenced(RuntimeError):
    """The write carried an ownership epoch that another instance has since replaced."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: uuid.UUID
    conversation_id: uuid.UUID
    sequence: int
    created_at: datetime
    client_message_id: uuid.UUID | None
    #: True when the client_message_id was already stored: this is that row, unchanged.
    duplicate: bool


@dataclass(frozen=True, slots=True)
class JournalChanged:
    """Announced after each commit: the (user, reference) journals that gained messages."""

    journals: frozenset[tuple[uuid.UUID, str]]


@dataclass(frozen=True, slots=True)
class Flush:
    """Internal: write the pending batch (told to itself behind the queued appends)."""

    lingered: bool = False
