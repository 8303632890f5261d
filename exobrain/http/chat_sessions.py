"""What the REST and WebSocket chat share: the message model, the rate limit, the session calls.

Handlers hold no chat state: they find the user's SessionActor through the
SessionManager and talk to it through the loop bridge. A refusal is a
:class:`ChatRefused` with an HTTP status and a stable code; REST answers it as
a JSON error, the WebSocket as an ``error`` frame.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from typing import Any

import pykka
import redis.asyncio as redis
from aiohttp import hdrs, web
from pydantic import BaseModel, ValidationInfo, field_validator
from redis.exceptions import NoScriptError

from exobrain.actors.session import (
    Accepted,
    SendMessage,
    SessionFor,
    StreamNotFound,
    TurnRejected,
)
from exobrain.supervision import ActorUnavailable, ask

from .actors import SESSIONS
from .resources import REDIS, SETTINGS

log = logging.getLogger(__name__)

#: How long a loop → session request may take (the first includes storing the message).
ASK_TIMEOUT = 15.0

#: Count a message in its minute's window: one atomic round trip (a MULTI pipeline costs
#: four commands' parsing and showed as an eighth of the event loop's time per chat turn).
_COUNT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], 61) end
return count
"""
_COUNT_SHA = hashlib.sha1(_COUNT.encode(), usedforsecurity=False).hexdigest()


class ChatMessage(BaseModel):
    """``max_chars`` comes in the validation context (CHAT_MAX_MESSAGE_CHARS)."""

    message: str
    client_message_id: uuid.UUID

    @field_validator("message")
    @classmethod
    def _bounded(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
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


async def session_for(app: web.Application, user_id: uuid.UUID) -> pykka.ActorRef[Any]:
    try:
        ref: pykka.ActorRef[Any] = await ask(
            app[SESSIONS].ref, SessionFor(user_id), timeout=ASK_TIMEOUT
        )
    except ActorUnavailable:
        raise ChatRefused(503, "unavailable", "chat is not available right now", 1) from None
    return ref


async def send_message(app: web.Application, user_id: uuid.UUID, body: ChatMessage) -> Accepted:
    """Rate-limit, then have the user's session store the message and queue its turn."""
    await _rate_limit(app, user_id)
    session = await session_for(app, user_id)
    message = SendMessage(body.client_message_id, body.message)
    try:
        accepted: Accepted = await ask(session, message, timeout=ASK_TIMEOUT)
    except TurnRejected as exc:
        raise ChatRefused(429, "too_many_pending", str(exc), 5) from None
    except ActorUnavailable:
        raise ChatRefused(503, "unavailable", "chat is restarting", 1) from None
    return accepted


async def ask_stream(session: pykka.ActorRef[Any], message: object) -> Any:
    """Ask the user's session about one of its streams; one it does not have is not found."""
    try:
        return await ask(session, message, timeout=ASK_TIMEOUT)
    except StreamNotFound:
        raise ChatRefused(404, "stream_not_found", "stream not found") from None
    except ActorUnavailable:
        raise ChatRefused(503, "unavailable", "chat is restarting", 1) from None


async def _rate_limit(app: web.Application, user_id: uuid.UUID) -> None:
    """At most CHAT_RATE_LIMIT_PER_MINUTE messages per user and minute (open if Redis is down)."""
    settings, client = app[SETTINGS], app[REDIS]
    window = int(time.time() // 60)
    key = f"{settings.redis_key_prefix}chat-rate:{user_id}:{window}"
    try:
        count = await _count(client, key)
    except redis.RedisError as exc:
        log.warning("chat rate limit skipped, Redis unavailable: %s", exc)
        return
    if count > settings.chat_rate_limit_per_minute:
        retry_after = 60 - int(time.time()) % 60
        raise ChatRefused(429, "rate_limited", "too many messages, slow down", retry_after)


async def _count(client: redis.Redis, key: str) -> int:
    try:
        count: int = await client.evalsha(_COUNT_SHA, 1, key)
    except NoScriptError:  # a Redis that restarted or never saw the script
        count = await client.eval(_COUNT, 1, key)
    return count
