"""Login throttling per email and per client address, in Redis.

Each counter holds the failures of a window that starts at its first failure,
and the attempts still in flight. An attempt is admitted only while failures
plus attempts in flight stay under ``AUTH_LOGIN_MAX_FAILURES``, checked and
counted in one script, so a thousand simultaneous guesses at one account get
no more password checks than the limit. Beyond the limit, attempts whose only
obstacle is others still in flight wait for them; attempts facing the limit in
failures are refused with the time until the window ends. A success clears the
email's failures (not the address's: one good account must not launder an
address's guesses at others).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import redis.asyncio as redis

from ._store import digest

Outcome = Literal["success", "failure", "abandoned"]

#: Longest an attempt waits for others in flight before it is refused after all.
MAX_WAIT_SECONDS = 10.0

# KEYS: counters (hashes of failures and pending). ARGV: limit, window seconds.
# Returns 0 when admitted (and now pending), -1 while attempts in flight could
# still use up the allowance, else the milliseconds until the fullest window ends.
_ADMIT = """
local limit, wait, busy = tonumber(ARGV[1]), 0, false
for _, key in ipairs(KEYS) do
  local failures = tonumber(redis.call('HGET', key, 'failures') or '0')
  local pending = tonumber(redis.call('HGET', key, 'pending') or '0')
  if failures >= limit then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then ttl = tonumber(ARGV[2]) * 1000 end
    wait = math.max(wait, ttl)
  elseif failures + pending >= limit then
    busy = true
  end
end
if wait > 0 then return wait end
if busy then return -1 end
for _, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, 'pending', 1)
  if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ARGV[2]) end
end
return 0
"""

# KEYS: email counter, address counter. ARGV: outcome, window seconds.
_SETTLE = """
for _, key in ipairs(KEYS) do
  if redis.call('HINCRBY', key, 'pending', -1) < 0 then redis.call('HSET', key, 'pending', 0) end
  if ARGV[1] == 'failure' and redis.call('HINCRBY', key, 'failures', 1) == 1 then
    redis.call('EXPIRE', key, ARGV[2])
  end
  if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, ARGV[2]) end
end
if ARGV[1] == 'success' then redis.call('HSET', KEYS[1], 'failures', 0) end
return 0
"""


class LoginThrottledError(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after}s")
        self.retry_after = retry_after


class Attempt:
    """One admitted login attempt; unless told how it went, it counts as abandoned."""

    def __init__(self) -> None:
        self.outcome: Outcome = "abandoned"

    def succeeded(self) -> None:
        self.outcome = "success"

    def failed(self) -> None:
        self.outcome = "failure"


class LoginThrottle:
    def __init__(
        self, client: redis.Redis, prefix: str, max_failures: int, window_seconds: int
    ) -> None:
        self._prefix = f"{prefix}login-attempts:"
        self._max_failures = max_failures
        self._window = window_seconds
        self._admit = client.register_script(_ADMIT)
        self._settle = client.register_script(_SETTLE)

    @asynccontextmanager
    async def attempt(self, email: str, address: str) -> AsyncIterator[Attempt]:
        """Admit a login attempt and record its outcome; :class:`LoginThrottledError` if refused."""
        keys = self._keys(email, address)
        await self._admitted(keys)
        attempt = Attempt()
        try:
            yield attempt
        finally:
            await self._settle(keys=keys, args=[attempt.outcome, self._window])

    async def _admitted(self, keys: list[str]) -> None:
        deadline = time.monotonic() + MAX_WAIT_SECONDS
        delay = 0.01
        while (
            wait_ms := int(await self._admit(keys=keys, args=[self._max_failures, self._window]))
        ) < 0:
            if time.monotonic() + delay > deadline:
                raise LoginThrottledError(1)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
        if wait_ms:
            raise LoginThrottledError(math.ceil(wait_ms / 1000))

    def _keys(self, email: str, address: str) -> list[str]:
        # Emails are hashed: key names show up in monitoring, personal data should not.
        return [f"{self._prefix}email:{digest(email.lower())}", f"{self._prefix}address:{address}"]
