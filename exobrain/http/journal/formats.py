"""A whole journal as a download: Markdown to read, JSON to process; tool calls included."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

import orjson

from exobrain.store.journal import Entry, Message, ToolCall


def dumps(value: object) -> bytes:
    """Journal JSON: datetimes as the reference API wrote them (``...Z``), asyncpg's UUIDs."""
    return orjson.dumps(value, default=_uuid, option=orjson.OPT_UTC_Z)


def _uuid(value: object) -> str:
    if isinstance(value, uuid.UUID):  # asyncpg's own subclass, which orjson does not know
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def as_json(entry: Entry, messages: Sequence[Message]) -> bytes:
    """``{"entry": {...}, "messages": [...]}``, messages in reading (``sequence``) order."""
    return dumps({"entry": entry, "messages": messages})


def as_markdown(entry: Entry, messages: Sequence[Message]) -> bytes:
    """A heading per message (sequence, role, time), its text, then its tool calls quoted."""
    parts = [f"# Journal {entry.reference}\n"]
    for message in messages:
        at = message.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        parts.append(f"## {message.sequence}. {message.role} · {at}\n\n{message.content}\n")
        parts.extend(_tool_call(call) for call in message.tool_calls)
    return "\n".join(parts).encode()


def _tool_call(call: ToolCall) -> str:
    lines = [f"**Tool call** `{call.tool_call_id}`: {call.title}"]
    if call.description:
        lines.append(call.description)
    if call.response is not None:
        lines.append(f"Response: {call.response}")
    if call.error is not None:
        lines.append(f"Error: {call.error}")
    quoted = "\n".join(f"> {line}" for text in lines for line in text.splitlines() or [""])
    return quoted + "\n"


Renderer = Callable[[Entry, Sequence[Message]], bytes]

#: ``format`` → how to render, the content type, the file name's extension.
FORMATS: dict[str, tuple[Renderer, str, str]] = {
    "markdown": (as_markdown, "text/markdown", "md"),
    "json": (as_json, "application/json", "json"),
}
