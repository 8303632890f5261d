"""Login throttling that cannot lock an owner out, in Redis.

OWASP's device-cookie scheme (:mod:`.devices`). Failures are counted per key,
each key's within a window that starts at its first failure:

- a client presenting a valid device token for the email counts against its
  device alone (``AUTH_LOGIN_MAX_FAILURES``): nobody else's guesses lock it
  out, and its own failures lock nothing else;
- every other client counts against the pair of email and address
  (``AUTH_LOGIN_MAX_FAILURES``), the address whatever the email
  (``AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS``: spraying many accounts), and the
  email whatever the address (``AUTH_LOGIN_MAX_FAILURES_PER_EMAIL``: one
  account from many addresses). Whoever knows an email can lock it for
  unknown clients only, and one person's typos behind a shared address lock
  out only that person's pair.

An IPv6 address counts as its /64, which one subscriber usually holds whole.

An attempt is admitted only while each of its keys' failures plus attempts in
flight stay under that key's limit, checked and counted in one script, so a
thousand simultaneous guesses at one account get no more password checks than
the limit. Beyond a limit, attempts whose only obstacle is others still in
flight wait for them; attempts facing a limit in failures are refused with the
time until that window ends. A success clears the failures of its pair or
device, not the address's or the email's: one good login must not launder
guesses at others.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as redis

from ._store import digest

Outcome = Literal["success", "failure", "abandoned"]

#: Longest an attempt waits for others in flight before it is refused after all.
MAX_WAIT_SECONDS = 10.0

# KEYS: counters (hashes of failures and pending). ARGV: window seconds, then each key's
# limit. Returns 0 when admitted (and now pending), -1 while attempts in flight could
# still use up an allowance, else the milliseconds until the longest full window ends.
_ADMIT = """
local window, wait, busy = tonumber(ARGV[1]), 0, false
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[i + 1])
  local counts = redis.call('HMGET', key, 'failures', 'pending')
  local failures, pending = tonumber(counts[1] or '0'), tonumber(counts[2] or '0')
  if failures >= limit then
    local ttl = redis.call('PTTL', key)
    if ttl < 0 then ttl = window * 1000 end
    wait = math.max(wait, ttl)
  elseif failures + pending >= limit then
    busy = true
  end
end
if wait > 0 then return wait end
if busy then return -1 end
for _, key in ipairs(KEYS) do
  redis.call('HINCRBY', key, 'pending', 1)
  if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, window) end
end
return 0
"""

# KEYS: the counters, the one a success clears first. ARGV: outcome, window seconds.
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


@dataclass(frozen=True, slots=True)
class Limits:
    """Failures allowed within ``window_seconds``, per counter."""

    per_pair: int  # per email and address, and per known device
    per_email: int  # from clients without the email's device token
    per_address: int  # from clients without a device token for the email they try
    window_seconds: int


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
    def __init__(self, client: redis.Redis, prefix: str, limits: Limits) -> None:
        self._prefix = f"{prefix}login-attempts:"
        self._limits = limits
        self._admit = client.register_script(_ADMIT)
        self._settle = client.register_script(_SETTLE)

    @asynccontextmanager
    async def attempt(
        self, email: str, address: str, device: str | None = None
    ) -> AsyncIterator[Attempt]:
        """Admit a login attempt and record its outcome; :class:`LoginThrottledError` if refused.

        ``device`` is the device a valid device token for ``email`` names, if one came along.
        """
        counters = self._counters(email, address, device)
        keys, limits = list(counters), list(counters.values())
        await self._admitted(keys, limits)
        attempt = Attempt()
        try:
            yield attempt
        finally:
            await self._settle(keys=keys, args=[attempt.outcome, self._limits.window_seconds])

    async def _admitted(self, keys: list[str], limits: list[int]) -> None:
        deadline = time.monotonic() + MAX_WAIT_SECONDS
        delay = 0.01
        args = [self._limits.window_seconds, *limits]
        while (wait_ms := int(await self._admit(keys=keys, args=args))) < 0:
            if time.monotonic() + delay > deadline:
                raise LoginThrottledError(1)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
        if wait_ms:
            raise LoginThrottledError(math.ceil(wait_ms / 1000))

    def _counters(self, email: str, address: str, device: str | None) -> dict[str, int]:
        """Key → limit, the key a success clears first."""
        limits, prefix = self._limits, self._prefix
        if device is not None:
            return {f"{prefix}device:{device}": limits.per_pair}
        # Emails are hashed: key names show up in monitoring, personal data should not.
        email_digest, network = digest(email.lower()), client_network(address)
        return {
            f"{prefix}pair:{email_digest}:{network}": limits.per_pair,
            f"{prefix}address:{network}": limits.per_address,
            f"{prefix}email:{email_digest}": limits.per_email,
        }


def client_network(address: str) -> str:
    """What one client is likely to hold: an IPv4 address, an IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:  # "unknown", a Unix socket's peer
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip), 64), strict=False))
    return str(ip)
