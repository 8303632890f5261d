"""The frames of ``/api/chat/ws`` (docs/websocket-protocol.md): client frames in, server frames out.

Every frame is a JSON object with a ``type``. The models below are the
protocol's contract: client frames are parsed with them, and the AsyncAPI
document and the frame tables of the protocol doc are generated from all of
them (:mod:`.asyncapi`). A client frame that cannot be understood becomes a
:class:`FrameError` naming the problem, which the socket answers with an
``error`` frame and stays open. Server frames are encoded from plain dicts
(the hot path); the tests check every frame the server sends against its model.
"""

from __future__ import annotations

import dataclasses
import typing
import uuid
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from exobrain.actors.session import ActiveStream, Item, StreamEvent, StreamStarted, Subscribed
from exobrain.agent.events import Event
from exobrain.http.knowledge.jobs import JobEvent
from exobrain.jobs.lifecycle import JobStatus

from .sessions import ChatMessage

#: ``YYYY/MM/DD``: the journal day a message is stored under.
JournalReference = Annotated[str, Field(pattern=r"^\d{4}/\d{2}/\d{2}$", examples=["2026/11/24"])]


def frame_type(model: type[BaseModel], member: str = "type") -> str:
    """The ``type`` a frame model stands for (or the value of another tag, ``event``)."""
    (kind,) = typing.get_args(model.model_fields[member].annotation)
    return str(kind)


# Client frames ------------------------------------------------------------------------------


class ChatSend(ChatMessage):
    """Send a message (not blank, no NUL, at most `CHAT_MAX_MESSAGE_CHARS`); answered by
    `chat.accepted` once it is stored. A retry with the same `client_message_id` answers the
    same stream."""

    type: Literal["chat.send"]


class ChatCancel(BaseModel):
    """Stop a turn; answered by `chat.cancelled`, then the stream ends with
    `done {reason: "cancelled"}`."""

    type: Literal["chat.cancel"]
    stream_id: uuid.UUID


class StreamResume(BaseModel):
    """Follow a stream: answered by `stream.resumed`, then the stream's events after
    `after_seq` (0 for all), then its live ones."""

    type: Literal["stream.resume"]
    stream_id: uuid.UUID
    after_seq: int = Field(ge=0, strict=True, description="the last `seq` the client has")


class Ping(BaseModel):
    """An application-level round trip; answered by `pong`."""

    type: Literal["ping"]


ClientFrame = ChatSend | ChatCancel | StreamResume | Ping
CLIENT_FRAMES: tuple[type[BaseModel], ...] = typing.get_args(ClientFrame)
_CLIENT_FRAME: TypeAdapter[ClientFrame] = TypeAdapter(
    Annotated[ClientFrame, Field(discriminator="type")]
)
_TYPES = frozenset(frame_type(model) for model in CLIENT_FRAMES)


# Server frames ------------------------------------------------------------------------------


def _absent_not_null(schema: dict[str, Any]) -> None:
    """An optional member of a server frame is left out, never sent as null."""
    for name, member in schema["properties"].items():
        if name not in schema.get("required", ()) and "anyOf" in member:
            member.pop("default", None)
            (kept,) = (branch for branch in member.pop("anyOf") if branch.get("type") != "null")
            member.update(kept)


class ServerFrame(BaseModel):
    """What every server frame model is (those below, in the order the document lists them)."""

    model_config = ConfigDict(json_schema_extra=_absent_not_null)


class AcceptedFrame(ServerFrame):
    """`chat.send` answered: the user message is durable in that day's journal and the turn
    is queued."""

    type: Literal["chat.accepted"]
    client_message_id: uuid.UUID
    stream_id: uuid.UUID
    journal_reference: JournalReference


class StartedFrame(ServerFrame):
    """A turn of the user starts, on every socket of the user (the sender's too, before or
    after its `chat.accepted`), before the stream's first event: the question, for every tab."""

    type: Literal["stream.started"]
    stream_id: uuid.UUID
    client_message_id: uuid.UUID
    journal_reference: JournalReference
    message: str


class EventFrame(ServerFrame):
    """An event of a turn of the user, on every socket of the user, whichever instance holds
    the socket and whichever runs the turn; `seq` is the same everywhere. `event` and `data`
    are the SSE contract's; `done` comes exactly once, last."""

    type: Literal["event"]
    stream_id: uuid.UUID
    seq: int = Field(ge=1, description="the event's number in its stream: 1, 2, 3, ...")
    first_seq: int | None = Field(
        default=None,
        ge=1,
        description="on merged `message_chunk` events only: the first number this one stands for",
    )


def _event_frame(event: type[Any]) -> type[EventFrame]:
    """The ``event`` frame of one agent event, its ``data`` derived from the event's
    dataclass (:mod:`exobrain.agent.events`), so that frame and payload cannot drift."""
    name = next(field.default for field in dataclasses.fields(event) if field.name == "name")
    hints = typing.get_type_hints(event)
    members: dict[str, Any] = {key: (hint, ...) for key, hint in hints.items() if key != "name"}
    doc = event.__doc__ or ""
    data = create_model(
        f"{event.__name__}Data",
        __doc__=None if doc.startswith(f"{event.__name__}(") else doc,  # not a generated one
        **members,
    )
    tag: Any = Literal[name]
    return create_model(
        f"{event.__name__}Event",
        __base__=EventFrame,
        __doc__=f"A `{name}` event of a turn.",
        event=(tag, ...),
        data=(data, ...),
    )


EVENT_FRAMES = tuple(_event_frame(event) for event in typing.get_args(Event))
#: An ``event`` frame of any event name, told apart by ``event``.
ANY_EVENT_FRAME: Any = Annotated[typing.Union[EVENT_FRAMES], Field(discriminator="event")]  # noqa: UP007


class ActiveFrame(ServerFrame):
    """Right after connecting, once per turn under way (running or waiting); its events
    follow only after `stream.resume`."""

    type: Literal["stream.active"]
    stream_id: uuid.UUID
    seq: int = Field(ge=0, description="the turn's last event so far")


class ResumedFrame(ServerFrame):
    """`stream.resume` answered: how far the stream is, and whether it has ended."""

    type: Literal["stream.resumed"]
    stream_id: uuid.UUID
    seq: int = Field(ge=0)
    finished: bool


class CancelledFrame(ServerFrame):
    """`chat.cancel` answered: `cancelled` is false when the turn had already finished."""

    type: Literal["chat.cancelled"]
    stream_id: uuid.UUID
    cancelled: bool


def _job_status_frame() -> type[ServerFrame]:
    """The ``job.status`` frame: its members are the watch's ``status`` event's
    (:class:`~exobrain.http.knowledge.jobs.JobEvent`), so that frame and event cannot drift."""
    members: dict[str, Any] = {
        key: (hint, ...) for key, hint in typing.get_type_hints(JobEvent).items()
    }
    tag: Any = Literal["job.status"]
    return create_model(
        "JobStatusFrame",
        __base__=ServerFrame,
        __doc__="A knowledge-update job of the user changed state (a worker took, retried or "
        "finished it), on every socket of the user, whichever instance holds it: the `status` "
        "event of `GET /api/knowledge/update/{job_id}/watch`. At most once each, never an "
        "older state of a job after a newer one; `GET /api/knowledge/update/{job_id}` has the "
        "current state (a socket is not told the states of jobs before it connected).",
        type=(tag, ...),
        **members,
    )


JobStatusFrame = _job_status_frame()


class PongFrame(ServerFrame):
    """`ping` answered."""

    type: Literal["pong"]


#: Every ``code`` of an ``error`` frame, and what it means.
ERROR_CODES: dict[str, str] = {
    "malformed_json": "the frame is not JSON",
    "invalid_frame": "not an object, or a missing or invalid member (`field` names it, e.g. "
    "`client_message_id`)",
    "unknown_type": 'a `type` this server does not know (`field: "type"`)',
    "binary_not_supported": "a binary frame",
    "stream_not_found": "no such stream of this user (never another user's)",
    "rate_limited": "more than `CHAT_RATE_LIMIT_PER_MINUTE` messages this minute; `retry_after` "
    "in seconds",
    "too_many_pending": "`CHAT_MAX_PENDING_TURNS` turns already wait behind the running one; "
    "`retry_after`",
    "unavailable": "chat is restarting, or a dependency the frame needed is down (`message` "
    "names it, e.g. `postgres unavailable`); nothing was done (a `chat.send` refused so was not "
    "stored): send it again, same `client_message_id`, after `retry_after` seconds. The socket "
    "stays open",
    "shutting_down": "the server is stopping; reconnect to another instance",
}


class ErrorFrame(ServerFrame):
    """A frame could not be acted on; the socket stays open."""

    type: Literal["error"]
    code: str = Field(json_schema_extra={"enum": list(ERROR_CODES)})
    message: str = Field(description="for people, not for programs")
    field: str | None = Field(default=None, description="the member at fault, for bad frames")
    client_message_id: uuid.UUID | None = Field(default=None, description="the refused message")
    stream_id: uuid.UUID | None = Field(default=None, description="the stream concerned")
    retry_after: int | None = Field(default=None, ge=0, description="seconds to wait")


SERVER_FRAMES: tuple[type[BaseModel], ...] = tuple(ServerFrame.__subclasses__())

#: Each client frame's answer (or an ``error`` frame instead).
ANSWERS: dict[type[BaseModel], type[BaseModel]] = {
    ChatSend: AcceptedFrame,
    ChatCancel: CancelledFrame,
    StreamResume: ResumedFrame,
    Ping: PongFrame,
}

#: Every close code a client may see, and (what it means, whether to reconnect).
CLOSE_CODES: dict[int, tuple[str, str]] = {
    1000: ("normal closure (the client closed)", "—"),
    1001: (
        "the server is shutting down; turns running then were stored first",
        "yes, with backoff, to any instance; `stream.resume` from the last `seq` seen",
    ),
    1006: (
        "no close frame: the peer vanished or missed heartbeats (`CHAT_WS_HEARTBEAT_SECONDS`, "
        "no pong within half of it)",
        "yes, with backoff",
    ),
    1007: ("a text frame that is not UTF-8", "yes, without that frame"),
    1008: (
        "flood: more frames than `CHAT_WS_MAX_FRAMES_PER_SECOND` (burst `CHAT_WS_FRAME_BURST`)",
        "yes, after slowing down",
    ),
    1009: ("a frame larger than `CHAT_WS_MAX_FRAME_BYTES`", "yes, without that frame"),
    1011: ("an unexpected server error (logged)", "yes, with backoff"),
    1013: ("chat is restarting", "yes, after a moment"),
    4001: (
        "the credentials expired or were revoked (checked every `CHAT_WS_AUTH_RECHECK_SECONDS`)",
        "after refreshing the token or logging in",
    ),
    4008: (
        "the socket fell behind: more than `CHAT_WS_OUTBOX_MAX_BYTES` of events waited for it, "
        "or it took no data for `CHAT_WS_WRITE_TIMEOUT_SECONDS`. The turn went on and was "
        "stored; resume its stream on a new socket",
        "yes",
    ),
    4009: (
        "replaced: the user opened more sockets than allowed and this was the oldest",
        "no, not automatically",
    ),
}


# Parsing and encoding -----------------------------------------------------------------------


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
        case JobStatus():
            return job_status(entry)


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


def job_status(status: JobStatus) -> str:
    return encode({"type": "job.status", **status.event()})


def cancelled(stream_id: uuid.UUID, was_running: bool) -> str:
    return encode({"type": "chat.cancelled", "stream_id": stream_id, "cancelled": was_running})


def error(code: str, message: str, **context: Any) -> str:
    """``context`` adds what the error is about (``client_message_id``, ``retry_after``...)."""
    extra = {key: value for key, value in context.items() if value is not None}
    return encode({"type": "error", "code": code, "message": message, **extra})


PONG = encode({"type": "pong"})
