"""A JetStream durable pull consumer per job type, shared by every worker process.

Every worker binds to the same durable consumer (``worker-<job_type>``), so
JetStream hands each message to one of them at a time and redelivers what a
lost worker never acknowledged after ``ack_wait``. Each process fetches only
as many messages as it has free slots, so a busy worker leaves the rest to
the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import asyncpg
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from exobrain.config import Settings
from exobrain.jobs import job_publisher, subject
from exobrain.jobs.handling import Handler

from ._delivery import Deliveries, RetryPolicy

log = logging.getLogger(__name__)

#: Longest wait of one fetch: bounds how long a stopping worker waits for its fetch to end.
FETCH_SECONDS = 1.0


def durable_name(job_type: str) -> str:
    return "worker-" + job_type.replace(".", "_")


class JobWorker:
    """Consumes every job type that has a handler until :meth:`stop`."""

    def __init__(
        self,
        settings: Settings,
        client: NatsClient,
        pool: asyncpg.Pool,
        handlers: Mapping[str, Handler],
    ) -> None:
        self._settings = settings
        self._client = client
        self._pool = pool
        self._handlers = dict(handlers)
        timeout = settings.job_orchestrator_connect_timeout_seconds
        self._jetstream = client.jetstream(timeout=timeout)
        self._loops: list[asyncio.Task[None]] = []
        self._running: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Create the stream and each consumer when absent (or update the consumer's settings)."""
        await job_publisher(self._client, self._settings).ensure_stream()
        for job_type, handler in self._handlers.items():
            subscription = await self._subscribe(job_type)
            deliveries = self._deliveries(handler)
            self._loops.append(asyncio.create_task(self._consume(subscription, deliveries)))
            log.info("job worker consuming %s", job_type)

    async def stop(self, grace: float) -> None:
        """Fetch no more; give running jobs ``grace`` seconds, then cancel them.

        A cancelled job is not acknowledged: JetStream redelivers it after the ack wait.
        """
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        running = set(self._running)
        if running:
            _, late = await asyncio.wait(running, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def _subscribe(self, job_type: str) -> JetStreamContext.PullSubscription:
        settings = self._settings
        name = durable_name(job_type)
        config = ConsumerConfig(
            durable_name=name,
            name=name,
            filter_subject=subject(settings.job_subject_prefix, job_type),
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=settings.job_worker_ack_wait_seconds,
            max_deliver=-1,  # the worker counts attempts itself, lost workers included
            max_ack_pending=-1,
        )
        await self._jetstream.add_consumer(settings.job_stream_name, config=config)
        return await self._jetstream.pull_subscribe_bind(
            durable=name, stream=settings.job_stream_name
        )

    def _deliveries(self, handler: Handler) -> Deliveries:
        settings = self._settings
        return Deliveries(
            client=self._client,
            jetstream=self._jetstream,
            pool=self._pool,
            prefix=settings.job_subject_prefix,
            handler=handler,
            policy=RetryPolicy(
                settings.job_worker_max_attempts,
                settings.job_worker_backoff_seconds,
                settings.job_worker_backoff_max_seconds,
            ),
            ack_wait=settings.job_worker_ack_wait_seconds,
        )

    async def _consume(
        self, subscription: JetStreamContext.PullSubscription, deliveries: Deliveries
    ) -> None:
        slots = self._settings.job_worker_concurrency
        mine: set[asyncio.Task[None]] = set()
        while True:
            if len(mine) >= slots:
                await asyncio.wait(mine, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                messages = await subscription.fetch(batch=slots - len(mine), timeout=FETCH_SECONDS)
            except nats.errors.TimeoutError:
                continue
            except nats.errors.Error as exc:  # disconnected: the client reconnects on its own
                log.warning("job fetch failed: %r", exc)
                await asyncio.sleep(FETCH_SECONDS)
                continue
            for message in messages:
                task = asyncio.create_task(deliveries.handle(message))
                for tasks in (mine, self._running):
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
