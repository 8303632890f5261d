"""The frames of ``/api/chat/ws`` (docs/websocket-protocol.md): client frames in, server frames out.

Every frame is a JSON object with a ``type``. A client frame that cannot be
understood becomes a :class:`FrameError` naming the problem, which the socket
answers with an ``error`` frame and stays open.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from exobrain.actors.session import ActiveStream, Item, StreamEvent, StreamStarted, Subscribed

from .sessions import ChatMessage


class ChatSend(ChatMessage):
    type: Literal["chat.send"]


class ChatCancel(BaseModel):
    type: Literal["chat.cancel"]
    stream_id: uuid.UUID


class StreamResume(BaseModel):
    type: Literal["stream.resume"]
    stream_id: uuid.UUID
    after_seq: int = Field(ge=0)


class Ping(BaseModel):
    type: Literal["ping"]


ClientFrame = ChatSend | ChatCancel | StreamResume | Ping
_CLIENT_FRAME: TypeAdapter[ClientFrame] = TypeAdapter(
    Annotated[ClientFrame, Field(discriminator="type")]
)
_TYPES = frozenset(("chat.send", "chat.cancel", "stream.resume", "ping"))


class FrameError(Exception):
    """A client frame the server cannot act on; ``field`` names the offending member."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


def parse(text: str, *, max_chars: int) -> ClientFrame:
    """One client frame; ``max_chars`` bounds ``chat.send`` messages as on REST."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise FrameError("malformed_json", "the frame is not valid JSON") from None
    if not isinstance(data, dict):
        raise FrameError("invalid_frame", "a frame is a JSON object")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise FrameError("invalid_frame", "type: a string is required", "type")
    if kind not in _TYPES:
        raise FrameError("unknown_type", f"unknown frame type {kind[:64]!r}", "type")
    try:
        return _CLIENT_FRAME.validate_python(data, context={"max_chars": max_chars})
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(part) for part in first["loc"][1:])  # [0] is the union's tag
        raise FrameError("invalid_frame", f"{field}: {first['msg']}", field) from None


def encode(frame: dict[str, Any]) -> str:
    return orjson.dumps(frame).decode()


def event(item: StreamEvent) -> str:
    frame = {"type": "event", "stream_id": item.stream_id, "seq": item.seq, "event": item.name}
    if item.first_seq is not None:
        frame["first_seq"] = item.first_seq
    frame["data"] = dict(item.data)
    return encode(frame)


def accepted(client_message_id: uuid.UUID, stream_id: uuid.UUID, reference: str) -> str:
    return encode(
        {
            "type": "chat.accepted",
            "client_message_id": client_message_id,
            "stream_id": stream_id,
            "journal_reference": reference,
        }
    )


def item(entry: Item) -> str:
    """An inbox entry as its frame: an event, or an announcement to an attached socket."""
    match entry:
        case StreamEvent():
            return event(entry)
        case ActiveStream():
            return active(entry)
        case StreamStarted():
            return started(entry)


def started(stream: StreamStarted) -> str:
    return encode(
        {
            "type": "stream.started",
            "stream_id": stream.stream_id,
            "client_message_id": stream.client_message_id,
            "journal_reference": stream.journal_reference,
            "message": stream.message,
        }
    )


def active(stream: ActiveStream) -> str:
    return encode({"type": "stream.active", "stream_id": stream.stream_id, "seq": stream.last_seq})


def resumed(stream_id: uuid.UUID, subscribed: Subscribed) -> str:
    return encode(
        {
            "type": "stream.resumed",
            "stream_id": stream_id,
            "seq": subscribed.last_seq,
            "finished": subscribed.finished,
        }
    )


def cancelled(stream_id: uuid.UUID, was_running: bool) -> str:
    return encode({"type": "chat.cancelled", "stream_id": stream_id, "cancelled": was_running})


def error(code: str, message: str, **context: Any) -> str:
    """``context`` adds what the error is about (``client_message_id``, ``retry_after``...)."""
    extra = {key: value for key, value in context.items() if value is not None}
    return encode({"type": "error", "code": code, "message": message, **extra})


PONG = encode({"type": "pong"})
