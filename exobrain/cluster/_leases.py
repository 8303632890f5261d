"""Leases on users: which instance owns a user's chat session, cluster-wide.

A lease is a Redis key ``<prefix>chat-lease:<user>`` holding the owner's
instance id with a TTL, renewed by a heartbeat: Redis decides who holds it,
and a dead owner's leases lapse after ``CHAT_LEASE_TTL_SECONDS``. Redis alone
cannot stop an owner that paused (GC, swap, a frozen VM) past its TTL from
writing after another instance took over, so every acquisition also raises
the user's epoch in PostgreSQL (``chat_owners``, migration 0006), and the
owner's durable writes carry that epoch: the database refuses a stale one.
That is the fencing token of Kleppmann's "How to do distributed locking".

Every leased user is also in the sorted set ``<prefix>chat-leased``, scored
by when its lease lapses, until it is released: a user whose owner died
(its score passed, and nobody released it) is found in one range query and
taken over without waiting for the user to come back. An owner that shuts
down hands its users off by scoring them as lapsed, so that the turns it
leaves waiting are taken over at once. Only a user acquired while still in
the set (``Acquired.inherited``) can have turns left unfinished by its last
owner: the chat log is searched for them then, and only then.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import redis.asyncio as redis
from redis.exceptions import NoScriptError

#: Redis's clock in milliseconds: every instance scores leases on the same clock.
_NOW = "local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)"

#: KEYS[1] the lease, KEYS[2] the leased set; ARGV: instance, ttl ms, user. A lease this
#: instance still holds but no longer knows of (a failed release) is taken again too.
#: Returns 0 (held by another), 1 (free), 2 (free, but its last owner did not release it).
_ACQUIRE = f"""
{_NOW}
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
local inherited = redis.call('ZSCORE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('ZADD', KEYS[2], now + ARGV[2], ARGV[3])
if inherited then return 2 end
return 1
"""

#: KEYS[1] the leased set, KEYS[2..] the leases; ARGV[1] instance, ARGV[2] ttl ms, ARGV[3..]
#: their users. Returns 1 (kept) or 0 (lost) per lease. A lease that vanished (Redis
#: restarted) is taken back: the epoch still fences it.
_RENEW = f"""
{_NOW}
local kept = {{}}
for i = 2, #KEYS do
  local holder = redis.call('GET', KEYS[i])
  if holder == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
    kept[i - 1] = 1
  elseif not holder and redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2]) then
    kept[i - 1] = 1
  else
    kept[i - 1] = 0
  end
  if kept[i - 1] == 1 then
    redis.call('ZADD', KEYS[1], now + ARGV[2], ARGV[i + 1])
  end
end
return kept
"""

#: KEYS[1] the leased set, KEYS[2..] the leases; ARGV[1] instance, ARGV[2] 1 to hand the
#: users off (scored as lapsed: taken over at once) or 0 to let them go, ARGV[3..] the users.
_RELEASE = """
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('DEL', KEYS[i])
    if ARGV[2] == '1' then
      redis.call('ZADD', KEYS[1], 0, ARGV[i + 1])
    else
      redis.call('ZREM', KEYS[1], ARGV[i + 1])
    end
  end
end
return 1
"""

#: KEYS[1] the leased set; ARGV[1] how many. Users whose lease lapsed unreleased.
_ORPHANED = f"""
{_NOW}
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[1])
"""

#: Orphaned users taken over per heartbeat, at most (a dead instance's may be many).
_ORPHANS_PER_BEAT = 100

#: The takeover's side of the fence (migration 0006): wait for the writes that passed
#: the check under the old epoch, then raise it.
_BUMP_LOCK = "SELECT pg_advisory_xact_lock(1164535650, chat_owner_lock_key($1))"
_BUMP = """
INSERT INTO chat_owners AS o (user_id, epoch, instance) VALUES ($1, 1, $2)
ON CONFLICT (user_id) DO UPDATE
SET epoch = o.epoch + 1, instance = EXCLUDED.instance, acquired_at = now()
RETURNING epoch
"""


class _Script:
    """A Lua script called by its digest, loaded again after a Redis restart."""

    def __init__(self, source: str) -> None:
        self._source = source
        self._sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(
        self, client: redis.Redis, keys: Sequence[str], args: Sequence[str | int]
    ) -> Any:
        try:
            return await client.evalsha(self._sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(self._source, len(keys), *keys, *args)


_acquire, _renew, _release, _orphaned = (
    _Script(_ACQUIRE),
    _Script(_RENEW),
    _Script(_RELEASE),
    _Script(_ORPHANED),
)


@dataclass(frozen=True, slots=True)
class Acquired:
    epoch: int
    #: The last owner did not release the user: it may have left turns unfinished.
    inherited: bool


class Leases:
    """This instance's side of the leases: acquire, renew, release, find the orphaned."""

    def __init__(
        self,
        client: redis.Redis,
        pool: asyncpg.Pool,
        *,
        key_prefix: str,
        instance_id: str,
        ttl: float,
    ) -> None:
        self._redis, self._pool = client, pool
        self._keys = f"{key_prefix}chat-lease:"
        self._leased = f"{key_prefix}chat-leased"
        self.instance_id = instance_id
        self.ttl = ttl
        self.ttl_ms = max(1, int(ttl * 1000))

    def _key(self, user_id: uuid.UUID) -> str:
        return f"{self._keys}{user_id}"

    async def acquire(self, user_id: uuid.UUID) -> Acquired | None:
        """The user's new epoch if the lease was free (or ours) and is now ours; None if
        another instance holds it. The new epoch fences any session of an older one."""
        args: list[str | int] = [self.instance_id, self.ttl_ms, str(user_id)]
        taken = await _acquire(self._redis, [self._key(user_id), self._leased], args)
        if not taken:
            return None
        try:
            async with self._pool.acquire() as connection, connection.transaction():
                await connection.execute(_BUMP_LOCK, user_id)
                epoch: int = await connection.fetchval(_BUMP, user_id, self.instance_id)
        except BaseException:
            await self.release([user_id], hand_off=taken == 2)
            raise
        return Acquired(epoch, inherited=taken == 2)

    async def holder(self, user_id: uuid.UUID) -> str | None:
        value = await self._redis.get(self._key(user_id))
        return value.decode() if isinstance(value, bytes) else value

    async def renew(self, users: list[uuid.UUID]) -> list[uuid.UUID]:
        """Extend the leases on ``users``; returns the ones this instance no longer holds."""
        if not users:
            return []
        kept = await _renew(
            self._redis,
            [self._leased, *(self._key(user) for user in users)],
            [self.instance_id, self.ttl_ms, *map(str, users)],
        )
        assert isinstance(kept, list)
        return [user for user, held in zip(users, kept, strict=True) if not held]

    async def release(self, users: Iterable[uuid.UUID], *, hand_off: bool = False) -> None:
        """Give the leases up; ``hand_off``: to be taken over at once, with what is left."""
        users = list(users)
        if users:
            keys = [self._leased, *(self._key(user) for user in users)]
            args = [self.instance_id, "1" if hand_off else "0", *map(str, users)]
            await _release(self._redis, keys, args)

    async def check(self) -> None:
        """Readiness: the lease store answers."""
        await self._redis.exists(self._leased)

    async def orphaned(self) -> list[uuid.UUID]:
        """Users leased and not released whose lease lapsed: their owner died."""
        users = await _orphaned(self._redis, [self._leased], [_ORPHANS_PER_BEAT])
        assert isinstance(users, list)
        return [uuid.UUID(user.decode()) for user in users]
