"""This instance as a member of the cluster: its id, the chat log, its leases (DESIGN.md §10).

Started after PostgreSQL, Redis and NATS and before the actors (the sessions
write to the log and report to the ownership); the heartbeat and the
forwarded commands start after the actors, in ``chat.sessions``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from exobrain.actors.session import DropSession, SessionFor
from exobrain.cluster import ChatLog, Commands, Leases, Ownership
from exobrain.supervision import ActorUnavailable, ask, tell

from .actors import METRICS, SESSIONS
from .health import READINESS
from .resources import NATS, PG_POOL, REDIS, SETTINGS

log = logging.getLogger(__name__)

#: How long starting a session may take (it reads the day and the orphans).
_ACTIVATE_TIMEOUT = 15.0


@dataclass(frozen=True, slots=True)
class Cluster:
    instance_id: str
    log: ChatLog
    leases: Leases
    ownership: Ownership
    commands: Commands


CLUSTER = web.AppKey("cluster", Cluster)


async def cluster_ctx(app: web.Application) -> AsyncIterator[None]:
    settings, metrics = app[SETTINGS], app[METRICS]
    instance_id = f"{uuid.uuid4().hex[:12]}-{os.getpid()}"
    chat_log = ChatLog(
        app[NATS],
        subject_prefix=settings.chat_subject_prefix,
        stream_name=settings.chat_log_stream_name,
        retention=settings.chat_stream_retention_seconds,
        max_bytes=settings.chat_log_max_bytes,
        instance_id=instance_id,
    )
    await chat_log.ensure()
    chat_log.on_published = metrics.chat_log_publish.observe
    leases = Leases(
        app[REDIS],
        app[PG_POOL],
        key_prefix=settings.redis_key_prefix,
        instance_id=instance_id,
        ttl=settings.chat_lease_ttl_seconds,
    )

    async def adopt(user_id: uuid.UUID, epoch: int) -> None:
        """A dead owner's user: a session only if it left turns unfinished (it takes them
        over); otherwise the lease, unused, is released by the next heartbeats."""
        if await chat_log.unfinished(user_id):
            wanted = SessionFor(user_id, epoch, inherited=True)
            await ask(app[SESSIONS].ref, wanted, timeout=_ACTIVATE_TIMEOUT)

    def drop(user_id: uuid.UUID) -> None:
        metrics.chat_leases_lost.inc()
        try:
            tell(app[SESSIONS].ref, DropSession(user_id))
        except ActorUnavailable:
            log.debug("no session manager to drop %s from", user_id)

    ownership = Ownership(leases, adopt=adopt, drop=drop)
    ownership.on_acquired = metrics.chat_leases_acquired.inc
    commands = Commands(
        app[NATS], subject_prefix=settings.chat_subject_prefix, instance_id=instance_id
    )
    commands.on_forward = lambda op: metrics.chat_forwarded.labels(op).inc()
    app[CLUSTER] = Cluster(instance_id, chat_log, leases, ownership, commands)
    app[READINESS].add("leases", leases.check)
    log.info("cluster member %s (chat log %s)", instance_id, settings.chat_log_stream_name)
    yield
    app[READINESS].remove("leases")
    await asyncio.gather(commands.close(), chat_log.close())
