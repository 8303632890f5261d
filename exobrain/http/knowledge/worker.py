"""The job worker inside the service (``JOB_WORKER_IN_PROCESS``, the ``exobrain dev`` default).

It shares the service's PostgreSQL pool, NATS connection and knowledge base
(so it is the process holding Qdrant's local mode: of ``--workers N``, only
worker 0 runs ``knowledge.update`` jobs), starts after them and stops before
them, letting running jobs finish within ``ACTOR_SHUTDOWN_TIMEOUT_SECONDS``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from exobrain.http.resources import NATS, PG_POOL, SETTINGS
from exobrain.worker import JobWorker, handlers_for

from .base import PASSAGES

log = logging.getLogger(__name__)


def setup_job_worker(app: web.Application) -> None:
    if app[SETTINGS].job_worker_in_process:
        app.cleanup_ctx.append(job_worker_ctx)


async def job_worker_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    handlers = handlers_for(settings, app.get(PASSAGES))
    worker = JobWorker(settings, app[NATS], app[PG_POOL], handlers)
    await worker.start()
    log.info("job worker in-process")
    yield
    await worker.stop(grace=settings.actor_shutdown_timeout_seconds)
