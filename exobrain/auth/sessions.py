"""Browser sessions: a random id in an HttpOnly cookie, its digest in Redis.

A session lives ``AUTH_REFRESH_TOKEN_TTL_SECONDS`` from login (it does not
slide) and ends at once when revoked.
"""

from __future__ import annotations

import secrets
import uuid

import redis.asyncio as redis

from ._store import digest, text


class WebSessions:
    def __init__(self, client: redis.Redis, prefix: str, ttl_seconds: int) -> None:
        self._redis = client
        self._prefix = f"{prefix}session:"
        self._ttl = ttl_seconds

    async def create(self, user_id: uuid.UUID) -> str:
        """Start a session for ``user_id``; the returned id is the cookie's value."""
        session_id = secrets.token_urlsafe(32)
        await self._redis.set(self._key(session_id), str(user_id), ex=self._ttl)
        return session_id

    async def user_id(self, session_id: str) -> uuid.UUID | None:
        """The session's user, or None when it is unknown, expired or revoked."""
        value = await self._redis.get(self._key(session_id))
        return None if value is None else uuid.UUID(text(value))

    async def revoke(self, session_id: str) -> None:
        await self._redis.delete(self._key(session_id))

    def _key(self, session_id: str) -> str:
        return self._prefix + digest(session_id)
