"""One delivery of one job: claim, run, settle, acknowledge.

The order matters for exactly-once effects. The job is claimed (``STARTED``)
in a short transaction of its own, so watchers see it; the handler then runs
in a second transaction that first locks the job's row and re-checks that it
is unfinished, and records ``SUCCEEDED`` before committing. The message is
acknowledged only after that commit: a worker lost before it leaves the job
unacknowledged (JetStream redelivers it after the ack wait) and its
transaction rolled back; a redelivery after it finds the job finished and only
acknowledges it. A failed attempt is ``RETRYING`` and negatively acknowledged
with a growing delay; the last one is published to the dead-letter subject,
recorded ``FAILED_FINAL`` and acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from exobrain.jobs.handling import Handler, Job, JobContext, MalformedJob, parse
from exobrain.jobs.lifecycle import JobState, JobStatus, dead_letter_subject, status_subject
from exobrain.jobs.records import Executor, lock_unfinished, transition

log = logging.getLogger(__name__)

#: Header values carry one line of at most this many characters.
_DETAIL_CHARS = 500


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int
    backoff: float
    backoff_max: float

    def delay(self, attempt: int) -> float:
        """Seconds before attempt ``attempt + 1``: ``backoff`` doubling, at most ``backoff_max``."""
        return min(self.backoff * 2.0 ** (attempt - 1), self.backoff_max)


class Deliveries:
    """Runs the deliveries of one job type."""

    def __init__(
        self,
        *,
        client: NatsClient,
        jetstream: JetStreamContext,
        pool: asyncpg.Pool,
        prefix: str,
        handler: Handler,
        policy: RetryPolicy,
        ack_wait: float,
    ) -> None:
        self._client = client
        self._jetstream = jetstream
        self._pool = pool
        self._prefix = prefix
        self._handler = handler
        self._policy = policy
        self._ack_wait = ack_wait

    async def handle(self, message: Msg) -> None:
        """Never raises: a delivery that cannot be settled now is negatively acknowledged."""
        attempt = message.metadata.num_delivered
        try:
            await self._handle(message, attempt)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, nats.errors.Error) as exc:
            log.warning("job delivery %s not settled, retrying: %r", message.subject, exc)
            with contextlib.suppress(nats.errors.Error):
                await message.nak(delay=self._policy.delay(attempt))

    async def _handle(self, message: Msg, attempt: int) -> None:
        try:
            job = parse(message.data)
        except MalformedJob as exc:
            sequence = message.metadata.sequence.stream
            await self._dead_letter(message, f"malformed.{sequence}", attempt, str(exc))
            await message.ack()
            return
        if attempt > self._policy.attempts:  # earlier deliveries were lost with their workers
            detail = f"gave up after {self._policy.attempts} attempts (workers lost mid-job)"
            await self._fail(message, job, attempt, detail)
            return
        claimed = await self._move(job, JobState.STARTED, attempt)
        if claimed is None:  # finished already: a redelivery of a settled job
            await message.ack()
            return
        try:
            async with self._keeping_alive(message):
                await self._run(job, attempt)
        except Exception as exc:
            log.warning("job %s (%s) attempt %d failed", job.id, job.type, attempt, exc_info=True)
            detail = f"{type(exc).__name__}: {exc}"
            if attempt >= self._policy.attempts:
                await self._fail(message, job, attempt, detail)
                return
            await self._move(job, JobState.RETRYING, attempt, detail)
            await message.nak(delay=self._policy.delay(attempt))
            return
        await message.ack()

    async def _run(self, job: Job, attempt: int) -> None:
        async with self._pool.acquire() as connection:
            async with connection.transaction():
                if not await lock_unfinished(connection, job.id):
                    return  # another delivery of the job finished it meanwhile
                detail = await self._handler(JobContext(job, attempt, connection))
                status = await self._transition(
                    connection, job, JobState.SUCCEEDED, attempt, detail
                )
            if status is not None:
                await self._announce(status)

    async def _fail(self, message: Msg, job: Job, attempt: int, detail: str) -> None:
        """Dead-letter and record the job, unless another delivery finished it.

        The dead letter is published under the row's lock, before the state
        commits: if publishing fails, nothing is recorded and the delivery is
        retried, so a ``FAILED_FINAL`` job always has its dead letter.
        """
        async with self._pool.acquire() as connection:
            async with connection.transaction():
                if not await lock_unfinished(connection, job.id):
                    status = None
                else:
                    await self._dead_letter(message, job.id, attempt, detail)
                    status = await self._transition(
                        connection, job, JobState.FAILED_FINAL, attempt, detail
                    )
            if status is not None:
                await self._announce(status)
        await message.ack()

    async def _move(
        self, job: Job, state: JobState, attempt: int, detail: str | None = None
    ) -> JobStatus | None:
        """Record and announce a transition of its own (not part of a job's transaction)."""
        status = await self._transition(self._pool, job, state, attempt, detail)
        if status is not None:
            await self._announce(status)
        return status

    @staticmethod
    async def _transition(
        executor: Executor, job: Job, state: JobState, attempt: int, detail: str | None
    ) -> JobStatus | None:
        return await transition(
            executor,
            job_id=job.id,
            job_type=job.type,
            user_id=job.user_id,
            state=state,
            attempt=attempt,
            detail=detail,
        )

    async def _announce(self, status: JobStatus) -> None:
        """Best effort: the row is the truth, and watchers read it too."""
        try:
            await self._client.publish(status_subject(self._prefix, status.job_id), status.encode())
        except nats.errors.Error as exc:
            log.warning("status of job %s not published: %r", status.job_id, exc)

    async def _dead_letter(self, message: Msg, key: str, attempt: int, detail: str) -> None:
        """The original message, as it was, on ``<prefix>.<job_type>.dead`` (once per key)."""
        job_type = message.subject.removeprefix(f"{self._prefix}.").removesuffix(".requested")
        line = " ".join(detail.split())[:_DETAIL_CHARS]
        await self._jetstream.publish(
            dead_letter_subject(self._prefix, job_type),
            message.data,
            headers={
                "Nats-Msg-Id": f"dead.{key}",
                "Exobrain-Job-Attempt": str(attempt),
                "Exobrain-Job-Detail": line,
            },
        )
        log.error("job %s (%s) failed for good: %s", key, job_type, line)

    @contextlib.asynccontextmanager
    async def _keeping_alive(self, message: Msg) -> AsyncIterator[None]:
        """Tell JetStream the job is in progress, so a long job is not redelivered meanwhile."""

        async def beat() -> None:
            while True:
                await asyncio.sleep(self._ack_wait / 3)
                with contextlib.suppress(nats.errors.Error):
                    await message.in_progress()

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
