"""Publish validated jobs to JetStream, exactly once per idempotency key.

The stream is created when absent with a duplicate window: a publish
repeating a ``Nats-Msg-Id`` inside it is acknowledged as a duplicate and
stores nothing, and the job id, derived from the same key, is the first
publish's. Its subjects are the jobs' and their dead letters' only
(:func:`stream_subjects`): status events (``<prefix>.status.<job_id>``) are
core NATS fan-out, the row in PostgreSQL is the truth, so the stream keeps none
of them; a stream over the whole ``<prefix>.>`` (before this) is narrowed, and
its stored status events purged, when a process starts. This is the one piece
of code behind both the orchestrator's ``EnqueueJob`` and the legacy
direct-publish path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from exobrain.config import Settings
from exobrain.proto import job_orchestrator_pb2 as pb

from .envelope import envelope, job_id_for, subject
from .errors import EnqueueUnavailable, InvalidJob
from .lifecycle import status_subject
from .validation import JOB_TYPE_DEPTH, validate

log = logging.getLogger(__name__)

#: Enqueue one job and return its id; raises InvalidJob (final) or EnqueueUnavailable (retry).
Enqueue = Callable[[pb.EnqueueJobRequest], Awaitable[str]]
#: One job's outcome in a batch: its id, or why it was not enqueued.
Enqueued = str | InvalidJob | EnqueueUnavailable
#: Enqueue jobs in the order given: one outcome per job, in that order.
EnqueueBatch = Callable[[Sequence[pb.EnqueueJobRequest]], Awaitable[list[Enqueued]]]


def one_at_a_time(enqueue: Enqueue) -> EnqueueBatch:
    """A batch as single enqueues, each awaited: the first unavailable one leaves the
    rest unsent (unavailable too), so that they keep their order when retried."""

    async def enqueue_each(requests: Sequence[pb.EnqueueJobRequest]) -> list[Enqueued]:
        outcomes: list[Enqueued] = []
        for request in requests:
            try:
                outcomes.append(await enqueue(request))
            except InvalidJob as exc:
                outcomes.append(exc)
            except EnqueueUnavailable as exc:
                return outcomes + [exc] * (len(requests) - len(outcomes))
        return outcomes

    return enqueue_each


def stream_subjects(prefix: str) -> list[str]:
    """Every job type's ``requested`` and ``dead`` subjects, and nothing else under ``prefix``.

    NATS has no "all but" filter, so there is one per job-type depth.
    """
    return [
        f"{prefix}.{'.'.join('*' * depth)}.{kind}"
        for kind in ("requested", "dead")
        for depth in range(1, JOB_TYPE_DEPTH + 1)
    ]


class JobPublisher:
    def __init__(
        self,
        jetstream: JetStreamContext,
        *,
        stream: str,
        prefix: str,
        duplicate_window: float,
        json_job_types: Collection[str] = (),
        timeout: float = 5.0,
    ) -> None:
        self._jetstream = jetstream
        self.stream = stream
        self.prefix = prefix
        self._duplicate_window = duplicate_window
        self._json_job_types = frozenset(json_job_types)
        self._timeout = timeout
        #: A batch is sent whole before the next: its jobs stay together, in order.
        self._sending = asyncio.Lock()

    async def ensure_stream(self) -> None:
        """Create the stream when absent; narrow one that still covers the status events."""
        subjects = stream_subjects(self.prefix)
        try:
            info = await self._jetstream.stream_info(self.stream)
        except NotFoundError:
            await self._jetstream.add_stream(
                name=self.stream, subjects=subjects, duplicate_window=self._duplicate_window
            )
            log.info("created JetStream stream %s over %s", self.stream, subjects)
            return
        covering = f"{self.prefix}.>"
        configured = info.config.subjects or []
        if covering not in configured:
            return  # used as it is configured
        kept = [s for s in configured if s != covering]
        await self._jetstream.update_stream(
            info.config, subjects=kept + [s for s in subjects if s not in kept]
        )
        purged = status_subject(self.prefix, ">")
        await self._jetstream.purge_stream(self.stream, subject=purged)
        log.info("JetStream stream %s no longer keeps %s (purged)", self.stream, purged)

    async def enqueue(self, request: pb.EnqueueJobRequest) -> str:
        job_id, data, headers = self._prepare(request)
        try:
            await self._jetstream.publish(
                subject(self.prefix, request.job_type),
                data,
                timeout=self._timeout,
                stream=self.stream,
                headers=headers,
            )
        except (nats.errors.Error, TimeoutError) as exc:
            raise _unavailable(exc) from exc
        return job_id

    async def enqueue_batch(self, requests: Sequence[pb.EnqueueJobRequest]) -> list[Enqueued]:
        """Publish every valid job in order without waiting for each acknowledgement,
        then wait for them all (within the timeout): one round trip, not one per job."""
        sent: list[Enqueued | tuple[str, asyncio.Future[Any]]] = []
        async with self._sending:
            for index, request in enumerate(requests):
                try:
                    job_id, data, headers = self._prepare(request)
                except InvalidJob as exc:
                    sent.append(exc)
                    continue
                try:
                    acknowledgement = await self._jetstream.publish_async(
                        subject(self.prefix, request.job_type),
                        data,
                        wait_stall=self._timeout,
                        stream=self.stream,
                        headers=headers,
                    )
                except (nats.errors.Error, TimeoutError) as exc:
                    sent.extend([_unavailable(exc)] * (len(requests) - index))
                    break
                sent.append((job_id, acknowledgement))
        acknowledgements = [item[1] for item in sent if isinstance(item, tuple)]
        if acknowledgements:
            await asyncio.wait(acknowledgements, timeout=self._timeout)
        return [_acknowledged(*item) if isinstance(item, tuple) else item for item in sent]

    def _prepare(self, request: pb.EnqueueJobRequest) -> tuple[str, bytes, dict[str, str] | None]:
        """The job id, envelope and headers of a valid request; raises InvalidJob."""
        payload = validate(request, self._json_job_types)
        job_id = job_id_for(request.idempotency_key)
        data = envelope(
            job_id=job_id, job_type=request.job_type, user_id=request.user_id, payload=payload
        )
        headers = {"Nats-Msg-Id": request.idempotency_key} if request.idempotency_key else None
        return job_id, data, headers


def _unavailable(exc: BaseException) -> EnqueueUnavailable:
    return EnqueueUnavailable(f"JetStream did not take the job: {exc!r}")


def _acknowledged(job_id: str, acknowledgement: asyncio.Future[Any]) -> Enqueued:
    """The job id once JetStream stored the job (or had it already); else unavailable."""
    if not acknowledgement.done():
        acknowledgement.cancel()
        return EnqueueUnavailable("JetStream did not acknowledge the job in time")
    exc = acknowledgement.exception()
    return job_id if exc is None else _unavailable(exc)


def job_publisher(client: NatsClient, settings: Settings) -> JobPublisher:
    """The publisher the settings describe, on ``client``'s JetStream."""
    return JobPublisher(
        client.jetstream(timeout=settings.job_orchestrator_connect_timeout_seconds),
        stream=settings.job_stream_name,
        prefix=settings.job_subject_prefix,
        duplicate_window=settings.job_stream_duplicate_window_seconds,
        json_job_types=settings.job_orchestrator_json_job_types,
        timeout=settings.job_orchestrator_connect_timeout_seconds,
    )
