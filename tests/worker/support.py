"""Helpers for the worker tests: jobs published through the real publisher, status events heard."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import asyncpg
import nats
import orjson
from nats.aio.msg import Msg

from exobrain.config import Settings
from exobrain.jobs import job_id_for, job_publisher
from exobrain.jobs.lifecycle import JobStatus
from exobrain.proto import job_orchestrator_pb2 as pb
from exobrain.store import create_pool
from exobrain.worker import Handler, JobWorker

USER = str(uuid.uuid4())


async def enqueue(settings: Settings, job_type: str, payload: Any, key: str = "") -> str:
    """Publish one job as the orchestrator does; its job id."""
    key = key or str(uuid.uuid4())
    client = await nats.connect(str(settings.exobrain_nats_url))
    try:
        publisher = job_publisher(client, settings)
        await publisher.ensure_stream()
        request = pb.EnqueueJobRequest(
            job_type=job_type,
            user_id=USER,
            idempotency_key=key,
            payload_json=orjson.dumps(payload).decode(),
        )
        job_id = await publisher.enqueue(request)
    finally:
        await client.close()
    assert job_id == job_id_for(key)
    return job_id


class StatusLog:
    """Every status event published under the settings' prefix, as it arrives."""

    def __init__(self) -> None:
        self.events: list[JobStatus] = []
        self.changed = asyncio.Event()

    async def receive(self, message: Msg) -> None:
        self.events.append(JobStatus.decode(message.data))
        self.changed.set()

    def of(self, job_id: str) -> list[tuple[str, int]]:
        return [(e.state.value, e.attempt) for e in self.events if e.job_id == job_id]


@contextlib.asynccontextmanager
async def status_log(settings: Settings) -> AsyncIterator[StatusLog]:
    client = await nats.connect(str(settings.exobrain_nats_url))
    log = StatusLog()
    await client.subscribe(f"{settings.job_subject_prefix}.status.>", cb=log.receive)
    await client.flush()
    try:
        yield log
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def running_worker(
    settings: Settings, handlers: Mapping[str, Handler]
) -> AsyncIterator[JobWorker]:
    """A worker with a NATS connection and pool of its own, as another process would have."""
    client = await nats.connect(str(settings.exobrain_nats_url))
    pool = await create_pool(settings)
    worker = JobWorker(settings, client, pool, handlers)
    try:
        await worker.start()
        yield worker
    finally:
        await worker.stop(grace=5)
        await client.close()
        await pool.close()


async def job_row(dsn: str, job_id: str) -> asyncpg.Record | None:
    connection = await asyncpg.connect(dsn)
    try:
        return await connection.fetchrow("SELECT * FROM jobs WHERE id = $1", uuid.UUID(job_id))
    finally:
        await connection.close()


async def effects(dsn: str, job_id: str) -> list[tuple[int, str]]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "SELECT attempt, worker FROM worker_test_effects WHERE job_id = $1", uuid.UUID(job_id)
        )
    finally:
        await connection.close()
    return [(row["attempt"], row["worker"]) for row in rows]
