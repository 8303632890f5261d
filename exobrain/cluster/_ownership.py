"""Which users this instance owns, kept true on the event loop.

Virtual actors, as in Orleans: a user's session is activated where a
command for the user arrives when nobody owns the user, and only there. This
keeps the leases of the users whose sessions run here alive (one Redis call
per heartbeat for all of them), releases a lease once no session has needed
it for a lease period, drops the session of a lease it lost, and takes over
the users whose owner died (their lease lapsed while still registered), so
that their unfinished turns end without waiting for the user to come back.
On shutdown it hands every lease back at once (Akka's hand-off), so the next
owner does not wait for them to lapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg
import redis.asyncio as redis

from ._leases import Leases

log = logging.getLogger(__name__)

#: The errors of an unreachable lease store (Redis) or epoch store (PostgreSQL).
STORE_ERRORS = (redis.RedisError, asyncpg.PostgresError, OSError, TimeoutError)


@dataclass(slots=True)
class _Owned:
    epoch: int
    used_at: float
    #: Its last owner may have left turns unfinished, until a session here took them over.
    inherited: bool
    sessions: int = 0


class Ownership:
    def __init__(
        self,
        leases: Leases,
        *,
        adopt: Callable[[uuid.UUID, int], Awaitable[None]],
        drop: Callable[[uuid.UUID], None],
    ) -> None:
        """``adopt`` takes over what a dead owner left of a user, now owned at an epoch;
        ``drop`` stops the user's session after the lease was lost."""
        self._leases = leases
        self._adopt_user, self._drop = adopt, drop
        self._owned: dict[uuid.UUID, _Owned] = {}
        self._claims: dict[uuid.UUID, asyncio.Future[int | None]] = {}
        #: Set at shutdown: this instance takes no user any more.
        self.closing = False
        #: Called once per lease acquired (for metrics).
        self.on_acquired: Callable[[], None] = lambda: None

    @property
    def instance_id(self) -> str:
        return self._leases.instance_id

    def owned(self) -> dict[uuid.UUID, int]:
        return {user: owned.epoch for user, owned in self._owned.items()}

    def inherited(self, user_id: uuid.UUID) -> bool:
        """Whether the session to start for the user must take over what is left."""
        owned = self._owned.get(user_id)
        return owned is not None and owned.inherited

    def epoch(self, user_id: uuid.UUID) -> int | None:
        """The epoch of a user this instance owns now, else None; acquires nothing."""
        owned = self._owned.get(user_id)
        if owned is None or self.closing:
            return None
        owned.used_at = time.monotonic()
        return owned.epoch

    async def claim(self, user_id: uuid.UUID) -> int | None:
        """Own the user if nobody does: the epoch if this instance owns it, else None.

        Concurrent claims of one user share one attempt.
        """
        if (epoch := self.epoch(user_id)) is not None:
            return epoch
        if self.closing:
            return None
        pending = self._claims.get(user_id)
        if pending is None:
            pending = self._claims[user_id] = asyncio.ensure_future(self._acquire(user_id))
            pending.add_done_callback(lambda _: self._claims.pop(user_id, None))
        return await asyncio.shield(pending)

    async def _acquire(self, user_id: uuid.UUID) -> int | None:
        acquired = await self._leases.acquire(user_id)
        if acquired is None:
            return None
        self._owned[user_id] = _Owned(acquired.epoch, time.monotonic(), acquired.inherited)
        self.on_acquired()
        log.debug("now owning user %s (epoch %d)", user_id, acquired.epoch)
        return acquired.epoch

    def forget(self, user_id: uuid.UUID) -> None:
        """The user turned out to be owned elsewhere (a refused write): stop claiming it."""
        if self._owned.pop(user_id, None) is not None:
            self._drop(user_id)

    def session_changed(self, user_id: uuid.UUID, alive: bool) -> None:
        """On the loop: a session of the user started or ended here."""
        owned = self._owned.get(user_id)
        if owned is not None:
            owned.sessions = max(0, owned.sessions + (1 if alive else -1))
            owned.used_at = time.monotonic()
            owned.inherited = owned.inherited and not alive

    async def run(self) -> None:
        """Heartbeat: renew, release the unneeded, drop the lost, adopt the orphaned."""
        interval = self._leases.ttl / 3
        while not self.closing:  # a shutdown ends it even if a cancellation got lost
            await asyncio.sleep(interval)
            try:
                await self._beat()
            except STORE_ERRORS as exc:  # the fence keeps writes safe meanwhile
                log.warning("chat lease heartbeat failed: %r", exc)
            except Exception:  # the heartbeat must outlive any one failure
                log.exception("chat lease heartbeat failed")

    async def _beat(self) -> None:
        for user_id in await self._leases.renew(list(self._owned)):
            log.warning("lost the lease on user %s; its session stops here", user_id)
            self.forget(user_id)
        now = time.monotonic()
        idle = [
            user_id
            for user_id, owned in self._owned.items()
            if owned.sessions == 0 and now - owned.used_at > self._leases.ttl
        ]
        for user_id in idle:
            del self._owned[user_id]
        await self._leases.release(idle)
        for user_id in await self._leases.orphaned():
            await self._adopt(user_id)

    async def _adopt(self, user_id: uuid.UUID) -> None:
        epoch = await self.claim(user_id)
        if epoch is not None:
            log.info("taking over user %s, whose owner is gone", user_id)
            await self._adopt_user(user_id, epoch)

    async def release_all(self) -> None:
        """Hand every user off now (shutdown): the next owner need not wait for the leases
        to lapse, and takes over at once the turns left waiting here."""
        self.closing = True
        users, self._owned = list(self._owned), {}
        with contextlib.suppress(*STORE_ERRORS):
            await self._leases.release(users, hand_off=True)
