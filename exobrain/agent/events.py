"""The events a chat turn streams: the SSE and WebSocket payloads (DESIGN.md §5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

EventName = Literal["tool_call", "tool_response", "error", "message_chunk", "done"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    tool_call_id: str
    title: str
    description: str
    name: EventName = "tool_call"


@dataclass(frozen=True, slots=True)
class ToolResponse:
    tool_call_id: str
    message: str
    name: EventName = "tool_response"


@dataclass(frozen=True, slots=True)
class Error:
    """A tool's failure (``tool_call_id`` set; the turn goes on) or the turn's (None)."""

    tool_call_id: str | None
    message: str
    name: EventName = "error"


@dataclass(frozen=True, slots=True)
class MessageChunk:
    text: str
    name: EventName = "message_chunk"


@dataclass(frozen=True, slots=True)
class Done:
    """Exactly once, last: ``completed``, ``cancelled`` or ``error``."""

    reason: str
    name: EventName = "done"


Event = ToolCall | ToolResponse | Error | MessageChunk | Done


def wire(event: Event) -> tuple[EventName, dict[str, Any]]:
    """The event's name and its ``data`` payload as clients receive them."""
    if isinstance(event, MessageChunk):  # the hot path: ~150 of these per answer
        return "message_chunk", {"text": event.text}
    data = {field: getattr(event, field) for field in event.__slots__ if field != "name"}
    return event.name, data
