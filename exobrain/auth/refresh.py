"""Refresh tokens: opaque, stored as digests, rotated on every use, revoked by login.

One token-mode login is one family of refresh tokens. ``login:<id>`` holds the
user and the digest of the family's only current token; ``refresh:<digest>``
maps every token the family ever had to it until that token would have expired.
Rotation is a single Lua script, so of two uses of one token exactly one wins.
Presenting a token that is no longer current means two parties hold it: the
login is deleted, which ends every refresh and access token it issued. Every
request checks its login: concurrent checks share a round trip (:mod:`.batching`).
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass

import redis.asyncio as redis

from ._store import digest, text
from .batching import Batcher
from .credentials import Credential
from .tokens import AccessClaims

log = logging.getLogger(__name__)

# KEYS: login, new token. ARGV: presented digest, new digest, login id, ttl.
# Returns the user id, 0 when the login is gone, -1 when a replay just revoked it.
_ROTATE = """
local current = redis.call('HGET', KEYS[1], 'current')
if not current then return 0 end
if current ~= ARGV[1] then
  redis.call('DEL', KEYS[1])
  return -1
end
redis.call('HSET', KEYS[1], 'current', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
return redis.call('HGET', KEYS[1], 'user')
"""


@dataclass(frozen=True, slots=True)
class RefreshGrant:
    """A refresh token just issued to ``user_id`` within login ``login_id``."""

    user_id: uuid.UUID
    login_id: str
    token: str


class RefreshTokens:
    def __init__(self, client: redis.Redis, prefix: str, ttl_seconds: int) -> None:
        self._redis = client
        self._logins = f"{prefix}login:"
        self._tokens = f"{prefix}refresh:"
        self._ttl = ttl_seconds
        self._rotate = client.register_script(_ROTATE)
        self._live: Batcher[str, bool] = Batcher(self._exist, default=False)

    async def issue(self, user_id: uuid.UUID) -> RefreshGrant:
        """Start a login for ``user_id`` with its first refresh token."""
        grant = RefreshGrant(user_id, secrets.token_hex(16), secrets.token_urlsafe(32))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._logins + grant.login_id,
                mapping={"user": str(user_id), "current": digest(grant.token)},
            )
            pipe.expire(self._logins + grant.login_id, self._ttl)
            pipe.set(self._tokens + digest(grant.token), grant.login_id, ex=self._ttl)
            await pipe.execute()
        return grant

    async def rotate(self, token: str) -> RefreshGrant | None:
        """Revoke ``token`` and issue its successor; None when it is not the login's current one."""
        login_id = await self._login_of(token)
        if login_id is None:
            return None
        successor = secrets.token_urlsafe(32)
        outcome = await self._rotate(
            keys=[self._logins + login_id, self._tokens + digest(successor)],
            args=[digest(token), digest(successor), login_id, self._ttl],
        )
        if outcome == -1:
            log.warning("refresh token replayed: login %s revoked", login_id)
        if isinstance(outcome, int):
            return None
        return RefreshGrant(uuid.UUID(text(outcome)), login_id, successor)

    async def revoke(self, token: str) -> None:
        """End the login ``token`` belongs to, whichever of its tokens it is."""
        if (login_id := await self._login_of(token)) is not None:
            await self.revoke_login(login_id)

    async def revoke_login(self, login_id: str) -> None:
        await self._redis.delete(self._logins + login_id)

    def credential(self, claims: AccessClaims) -> Credential:
        """The login of an access token, as a script checks it: its hash names its user."""
        return Credential(self._logins + claims.login_id, "user", claims.user_id)

    def is_live(self, login_id: str) -> Awaitable[bool]:
        """Whether the login still exists; a future, so that awaiting it with others
        (:func:`asyncio.gather`) costs no task."""
        return self._live.get(login_id)

    async def _exist(self, login_ids: list[str]) -> dict[str, bool]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for login_id in login_ids:
                pipe.exists(self._logins + login_id)
            counts = await pipe.execute()
        return dict(zip(login_ids, map(bool, counts), strict=True))

    async def _login_of(self, token: str) -> str | None:
        value = await self._redis.get(self._tokens + digest(token))
        return None if value is None else text(value)
