"""Every job status the workers publish, heard once per instance.

One core NATS subscription to ``<JOB_SUBJECT_PREFIX>.status.>`` for the whole
process, however many sockets it serves: each status is decoded once and
handed to one listener (the chat sockets pick their user's). Statuses are at
most once and may come out of order (several workers): listeners order them
by ``version`` and read the ``jobs`` row for what they missed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import nats.errors
import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from exobrain.jobs.lifecycle import JobStatus, status_subject

log = logging.getLogger(__name__)


class JobFeed:
    def __init__(
        self, client: NatsClient, prefix: str, listener: Callable[[JobStatus], None]
    ) -> None:
        self._client, self._prefix, self._listener = client, prefix, listener
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        """Subscribe (kept across reconnects by the client)."""
        subject = status_subject(self._prefix, ">")
        self._subscription = await self._client.subscribe(subject, cb=self._receive)

    async def stop(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(nats.errors.Error):  # a closed connection has none
                await self._subscription.unsubscribe()
            self._subscription = None

    async def _receive(self, message: Msg) -> None:
        try:
            status = JobStatus.decode(message.data)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            log.warning("a job status on %s is not one: %r", message.subject, exc)
            return
        self._listener(status)
