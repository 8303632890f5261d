"""Browser sessions: a random id in an HttpOnly cookie, its digest in Redis.

A session lives ``AUTH_REFRESH_TOKEN_TTL_SECONDS`` from login (it does not
slide) and ends at once when revoked. Concurrent lookups share one ``MGET``
(:mod:`.batching`).
"""

from __future__ import annotations

import secrets
import uuid

import redis.asyncio as redis

from ._store import digest, text
from .batching import Batcher
from .credentials import Credential


class WebSessions:
    def __init__(self, client: redis.Redis, prefix: str, ttl_seconds: int) -> None:
        self._redis = client
        self._prefix = f"{prefix}session:"
        self._ttl = ttl_seconds
        self._users: Batcher[str, uuid.UUID | None] = Batcher(self._users_of, default=None)

    async def create(self, user_id: uuid.UUID) -> str:
        """Start a session for ``user_id``; the returned id is the cookie's value."""
        session_id = secrets.token_urlsafe(32)
        await self._redis.set(self._key(session_id), str(user_id), ex=self._ttl)
        return session_id

    async def user_id(self, session_id: str) -> uuid.UUID | None:
        """The session's user, or None when it is unknown, expired or revoked."""
        return await self._users.get(session_id)

    def credential(self, session_id: str) -> Credential:
        """The session as a script checks it: its value is its user."""
        return Credential(self._key(session_id), "", None)

    async def _users_of(self, session_ids: list[str]) -> dict[str, uuid.UUID]:
        values = await self._redis.mget([self._key(session_id) for session_id in session_ids])
        return {
            session_id: uuid.UUID(text(value))
            for session_id, value in zip(session_ids, values, strict=True)
            if value is not None
        }

    async def revoke(self, session_id: str) -> None:
        await self._redis.delete(self._key(session_id))

    def _key(self, session_id: str) -> str:
        return self._prefix + digest(session_id)
