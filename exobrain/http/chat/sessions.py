"""What the REST and WebSocket chat share: the message model, the rate limit, the routing.

Handlers hold no chat state. A command (send, cancel) goes to the user's
SessionActor on the instance that owns the user: this one, when it holds the
user's lease or nobody does (then it takes the lease); otherwise the owner,
over NATS (:mod:`exobrain.cluster`), which runs the same local path. Reading
a stream is ``streams``'. A refusal is a :class:`ChatRefused`
with an HTTP status and a stable code; REST answers it as a JSON error, the
WebSocket as an ``error`` frame, and a forwarded command carries it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from types import MappingProxyType
from typing import Any

import nats.errors
from aiohttp import hdrs, web
from pydantic import BaseModel, Field, ValidationInfo, field_validator

from exobrain.actors.session import (
    INTERRUPTED,
    Accepted,
    CancelTurn,
    NotOwner,
    RunningSession,
    SendMessage,
    SessionDirectory,
    SessionFor,
    StopSessions,
    StreamEvent,
    StreamNotFound,
    StreamStarted,
    TurnRejected,
    answer_id,
)
from exobrain.cluster import (
    STORE_ERRORS,
    Logged,
    OwnerUnreachable,
)
from exobrain.http.actors import SESSIONS
from exobrain.http.cluster import CLUSTER
from exobrain.http.resources import PG_POOL, SETTINGS
from exobrain.http.validation import NonBlankText
from exobrain.outages import RETRY_AFTER_SECONDS, outage_of
from exobrain.supervision import ActorUnavailable, ask

from .rates import MessageRates

log = logging.getLogger(__name__)

#: The sessions running here, as the loop knows them (set up with the SessionManager).
DIRECTORY = web.AppKey("session_directory", SessionDirectory)
#: The messages of the users owned here, counted per minute (CHAT_RATE_LIMIT_PER_MINUTE).
RATES = web.AppKey("chat_rates", MessageRates)

#: How long a loop → session request may take (the first includes storing the message).
ASK_TIMEOUT = 15.0

#: One forwarded command's wait for the owner's answer. A command sent to an owner that
#: just died waits for nothing ("no responders" comes only once NATS noticed), so it is
#: sent again after this, which commands' idempotency makes safe.
_FORWARD_TIMEOUT = 2.0

#: How long a reader elsewhere looks for a stream missing from the log (the owner accepts a
#: message before the log acknowledges its first entry), and how often it looks.
LOG_PATIENCE = 0.5
_LOG_POLL = 0.02


class ChatMessage(BaseModel):
    """A message to store in today's journal and answer."""

    # ``max_chars`` comes in the validation context (CHAT_MAX_MESSAGE_CHARS).
    message: NonBlankText = Field(
        description="At most `CHAT_MAX_MESSAGE_CHARS` characters (16,000 by default)."
    )
    #: A retry with the same id answers the same stream and starts nothing new.
    client_message_id: uuid.UUID

    @field_validator("message")
    @classmethod
    def _bounded(cls, value: str, info: ValidationInfo) -> str:
        limit = (info.context or {}).get("max_chars")
        if limit is not None and len(value) > limit:
            raise ValueError(f"must be at most {limit} characters")
        return value


class ChatRefused(Exception):
    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {hdrs.RETRY_AFTER: str(self.retry_after)}

    def as_reply(self) -> dict[str, Any]:
        return {"refused": [self.status, self.code, self.message, self.retry_after]}


def not_found() -> ChatRefused:
    return ChatRefused(404, "stream_not_found", "stream not found")


def unavailable(why: str = "chat is not available right now") -> ChatRefused:
    return ChatRefused(503, "unavailable", why, RETRY_AFTER_SECONDS)


def refusal_for(exc: BaseException) -> ChatRefused | None:
    """``unavailable``, naming the dependency, when ``exc`` reports its outage."""
    down = outage_of(exc)
    return None if down is None else ChatRefused(503, "unavailable", down.detail, down.retry_after)


def _shutting_down() -> ChatRefused:
    return ChatRefused(503, "shutting_down", "the server is shutting down", RETRY_AFTER_SECONDS)


async def send_message(app: web.Application, user_id: uuid.UUID, body: ChatMessage) -> Accepted:
    """Have the user's session (on its owner, rate-limited there) store the message and
    queue its turn."""
    accepted: Accepted = await _on_owner(
        app, user_id, SendMessage(body.client_message_id, body.message)
    )
    return accepted


async def cancel(app: web.Application, user_id: uuid.UUID, stream_id: uuid.UUID) -> bool:
    """Stop the stream's turn; False when it had already ended."""
    cancelled: bool = await _on_owner(app, user_id, CancelTurn(stream_id))
    return cancelled


async def _on_owner(app: web.Application, user_id: uuid.UUID, command: Command) -> Any:
    """Run ``command`` on the user's owner: here if this instance owns the user or nobody
    does, else forwarded. A dead owner's lease lapses within the TTL; meanwhile this waits."""
    cluster, loop = app[CLUSTER], asyncio.get_running_loop()
    deadline = loop.time() + ASK_TIMEOUT
    pause = 0.05
    while True:
        try:
            epoch = await cluster.ownership.claim(user_id)
            if epoch is not None:
                return await _locally(app, user_id, epoch, command)
            holder = await cluster.leases.holder(user_id)
            if holder is None and cluster.ownership.closing:
                raise _shutting_down()
            if holder is not None and holder != cluster.instance_id:
                timeout = max(0.1, min(_FORWARD_TIMEOUT, deadline - loop.time()))
                reply = await cluster.commands.request(
                    holder, _encode(user_id, command), timeout=timeout
                )
                if "not_owner" not in reply:
                    return _decode_reply(command, reply)
        except NotOwner:
            cluster.ownership.forget(user_id)
        except OwnerUnreachable:
            log.info("owner of %s did not answer; waiting for its lease to lapse", user_id)
        except STORE_ERRORS as exc:
            log.warning("chat ownership unavailable: %r", exc)
            raise refusal_for(exc) or unavailable() from None
        if loop.time() + pause > deadline:
            raise unavailable("the chat session is moving, try again")
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.5)


async def _locally(app: web.Application, user_id: uuid.UUID, epoch: int, command: Command) -> Any:
    """Run ``command`` on this instance's session of the user (owned, at ``epoch``)."""
    if isinstance(command, SendMessage) and (retry_after := app[RATES].count(user_id)):
        raise ChatRefused(429, "rate_limited", "too many messages, slow down", retry_after)
    inherited = app[CLUSTER].ownership.inherited(user_id)
    session = await find_session(app, SessionFor(user_id, epoch, inherited))
    try:
        result = await ask(session, command, timeout=ASK_TIMEOUT)
    except TurnRejected as exc:
        raise ChatRefused(429, "too_many_pending", str(exc), 5) from None
    except ActorUnavailable:
        raise unavailable("chat is restarting") from None
    except StreamNotFound:  # not this session's: an earlier owner's, or none at all
        assert isinstance(command, CancelTurn)
        if await logged(app, user_id, command.stream_id, patience=LOG_PATIENCE) is None:
            raise not_found() from None
        return False
    except Exception as exc:  # the session could not store the message, say
        if (refused := refusal_for(exc)) is None:
            raise
        raise refused from None
    if isinstance(result, Accepted) and result.duplicate and not result.held:
        assert isinstance(command, SendMessage)
        await _recover(app, user_id, result.stream_id, command.client_message_id)
    return result


async def find_session(app: web.Application, message: SessionFor | RunningSession) -> Any:
    """The user's session here: straight from the loop's directory when it knows it runs
    (the common case: no hop through the manager), else the manager's answer."""
    epoch = (
        message.epoch
        if isinstance(message, SessionFor)
        else app[CLUSTER].ownership.epoch(message.user_id)
    )
    if epoch is not None and (ref := app[DIRECTORY].find(message.user_id, epoch)) is not None:
        return ref
    try:
        return await ask(app[SESSIONS].ref, message, timeout=ASK_TIMEOUT)
    except ActorUnavailable:
        raise unavailable() from None


Command = SendMessage | CancelTurn


def _encode(user_id: uuid.UUID, command: Command) -> dict[str, Any]:
    match command:
        case SendMessage(client_message_id=cid, text=text):
            return {"op": "send", "user": str(user_id), "cid": str(cid), "text": text}
        case CancelTurn(stream_id=stream_id):
            return {"op": "cancel", "user": str(user_id), "stream": str(stream_id)}


def _decode_reply(command: Command, reply: dict[str, Any]) -> Any:
    if "refused" in reply:
        raise ChatRefused(*reply["refused"])
    answer = reply["ok"]
    if isinstance(command, CancelTurn):
        return bool(answer)
    return Accepted(uuid.UUID(answer["stream"]), answer["reference"], answer["duplicate"])


async def handle_forwarded(app: web.Application, command: dict[str, Any]) -> dict[str, Any]:
    """The owner's side of a forwarded command: the local path, or "not the owner"."""
    user_id = uuid.UUID(command["user"])
    epoch = app[CLUSTER].ownership.epoch(user_id)
    if epoch is None:
        return {"not_owner": True}
    decoded: Command
    if command["op"] == "send":
        decoded = SendMessage(uuid.UUID(command["cid"]), command["text"])
    else:
        decoded = CancelTurn(uuid.UUID(command["stream"]))
    try:
        result = await _locally(app, user_id, epoch, decoded)
    except ChatRefused as exc:
        return exc.as_reply()
    except NotOwner:
        app[CLUSTER].ownership.forget(user_id)
        return {"not_owner": True}
    if isinstance(result, Accepted):
        stream, reference = str(result.stream_id), result.journal_reference
        return {"ok": {"stream": stream, "reference": reference, "duplicate": result.duplicate}}
    return {"ok": result}


async def logged(
    app: web.Application, user_id: uuid.UUID, stream_id: uuid.UUID, *, patience: float = 0.0
) -> Logged | None:
    """The stream's newest log message; ``patience``: how long to wait for a stream that
    was just accepted elsewhere (its owner answers before its log write is acknowledged)."""
    chat_log, loop = app[CLUSTER].log, asyncio.get_running_loop()
    deadline = loop.time() + patience
    try:
        while (last := await chat_log.last(user_id, stream_id)) is None:
            if loop.time() >= deadline:
                return None
            await asyncio.sleep(_LOG_POLL)
    except (nats.errors.Error, TimeoutError):
        raise unavailable() from None
    return last


async def _recover(
    app: web.Application, user_id: uuid.UUID, stream_id: uuid.UUID, client_message_id: uuid.UUID
) -> None:
    """A retried message whose stream is not in the log any more: log it again from the
    journal, so that the stream id the service handed out always leads to a stream that
    ends (with the stored answer, or an error if the answer never was)."""
    if await logged(app, user_id, stream_id) is not None:
        return
    rows = await app[PG_POOL].fetch(
        """
        SELECT m.role, m.content, m.metadata, m.client_message_id, c.reference
        FROM conversations c JOIN messages m ON m.conversation_id = c.id
        WHERE c.user_id = $1 AND m.client_message_id = ANY($2::uuid[])
        """,
        user_id,
        [client_message_id, answer_id(stream_id)],
    )
    question = next((row for row in rows if row["role"] == "user"), None)
    answer = next((row for row in rows if row["role"] == "assistant"), None)
    if question is None:
        return
    events: list[tuple[str, dict[str, Any]]] = []
    status = None
    if answer is not None:
        events.append(("message_chunk", {"text": answer["content"]}))
        status = (answer["metadata"] or {}).get("status")
    if answer is None or status == "interrupted":
        events.append(("error", {"tool_call_id": None, "message": INTERRUPTED}))
    reason = "completed" if answer is not None and status is None else status or "error"
    events.append(("done", {"reason": "error" if status == "interrupted" else reason}))
    started = StreamStarted(
        stream_id, question["client_message_id"], question["reference"], question["content"]
    )
    numbered = [
        StreamEvent(stream_id, seq, name, MappingProxyType(data))  # type: ignore[arg-type]
        for seq, (name, data) in enumerate(events, start=1)
    ]
    chat_log = app[CLUSTER].log
    chat_log.append(user_id, stream_id, [started, *numbered])
    await chat_log.durable(stream_id)


async def ownership_ctx(app: web.Application) -> AsyncIterator[None]:
    """After the actors: answer forwarded commands and keep the leases alive."""
    cluster = app[CLUSTER]
    await cluster.commands.serve(lambda command: handle_forwarded(app, command))
    heartbeat = asyncio.create_task(cluster.ownership.run())
    yield
    cluster.ownership.closing = True
    heartbeat.cancel()
    # Bounded: a cancellation swallowed somewhere below once hung shutdown for good.
    await asyncio.wait([heartbeat], timeout=cluster.leases.ttl)
    if not heartbeat.done():
        log.warning("the lease heartbeat did not stop on time; leaving it")


async def hand_off(app: web.Application) -> None:
    """At shutdown: sessions store their running turns, then every lease goes back at once
    (the next owner need not wait for them to lapse) and takes over what is left."""
    app[CLUSTER].ownership.closing = True
    with contextlib.suppress(ActorUnavailable, TimeoutError):
        await ask(
            app[SESSIONS].ref, StopSessions(), timeout=app[SETTINGS].actor_shutdown_timeout_seconds
        )
    await app[CLUSTER].ownership.release_all()
