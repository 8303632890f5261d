"""``exobrain worker``: the job worker as a process of its own."""

from __future__ import annotations

import asyncio
import logging
import signal

import nats

from exobrain.config import Settings
from exobrain.store import create_pool, migrate

from ._consumer import JobWorker
from ._handlers import handlers_for

log = logging.getLogger(__name__)


async def serve(settings: Settings) -> int:
    """Work until SIGINT or SIGTERM, then let running jobs finish within the shutdown timeout.

    Without ``EXOBRAIN_QDRANT_URL`` this process holds Qdrant's local mode in the
    state dir: no service may then use that directory (run the worker in-process).
    """
    from exobrain.knowledge import LazyQdrant, passage_store  # noqa: PLC0415 - not on import

    qdrant = LazyQdrant(settings)
    qdrant.client()  # now: a state dir another process holds stops the worker at start
    handlers = handlers_for(settings, passage_store(settings, qdrant.client))
    await migrate(str(settings.assistant_db_dsn))
    pool = await create_pool(settings)
    client = await nats.connect(
        str(settings.exobrain_nats_url),
        name="exobrain-worker",
        connect_timeout=settings.startup_dependency_timeout_seconds,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
    )
    try:
        worker = JobWorker(settings, client, pool, handlers)
        await worker.start()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        print(f"job worker is consuming {', '.join(sorted(handlers)) or 'nothing'}", flush=True)
        await stopping.wait()
        log.info("job worker shutting down")
        await worker.stop(grace=settings.actor_shutdown_timeout_seconds)
    finally:
        await client.close()
        await pool.close()
        await qdrant.close()
    return 0
