"""Publish validated jobs to JetStream, exactly once per idempotency key.

The stream is created when absent, over ``<prefix>.>``, with a duplicate
window: a publish repeating a ``Nats-Msg-Id`` inside it is acknowledged as a
duplicate and stores nothing, and the job id, derived from the same key, is
the first publish's. This is the one piece of code behind both the
orchestrator's ``EnqueueJob`` and the legacy direct-publish path.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from exobrain.config import Settings
from exobrain.proto import job_orchestrator_pb2 as pb

from .envelope import envelope, job_id_for, subject
from .errors import EnqueueUnavailable
from .validation import validate

log = logging.getLogger(__name__)

#: Enqueue one job and return its id; raises InvalidJob (final) or EnqueueUnavailable (retry).
Enqueue = Callable[[pb.EnqueueJobRequest], Awaitable[str]]


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

    async def ensure_stream(self) -> None:
        """Create the stream when absent; an existing one is used as it is configured."""
        try:
            await self._jetstream.stream_info(self.stream)
        except NotFoundError:
            await self._jetstream.add_stream(
                name=self.stream,
                subjects=[f"{self.prefix}.>"],
                duplicate_window=self._duplicate_window,
            )
            log.info("created JetStream stream %s over %s.>", self.stream, self.prefix)

    async def enqueue(self, request: pb.EnqueueJobRequest) -> str:
        payload = validate(request, self._json_job_types)
        job_id = job_id_for(request.idempotency_key)
        data = envelope(
            job_id=job_id, job_type=request.job_type, user_id=request.user_id, payload=payload
        )
        headers = {"Nats-Msg-Id": request.idempotency_key} if request.idempotency_key else None
        try:
            await self._jetstream.publish(
                subject(self.prefix, request.job_type),
                data,
                timeout=self._timeout,
                stream=self.stream,
                headers=headers,
            )
        except (nats.errors.Error, TimeoutError) as exc:
            raise EnqueueUnavailable(f"JetStream did not take the job: {exc!r}") from exc
        return job_id


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
