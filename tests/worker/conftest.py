"""Fixtures for the worker tests: a jobs stream of the test's own, a migrated database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest
from orchestrator.support import JobsStream, jobs_stream

from exobrain.config import Settings
from exobrain.store import migrate

from .handlers import EFFECT, EFFECTS_TABLE


@pytest.fixture
async def stream(nats_url: str, namespace: str) -> AsyncIterator[JobsStream]:
    async with jobs_stream(nats_url, namespace) as created:
        yield created


@pytest.fixture
async def worker_settings(
    make_settings: Callable[..., Settings], stream: JobsStream, nats_url: str
) -> Settings:
    settings = make_settings(
        exobrain_nats_url=nats_url,
        job_orchestrator_json_job_types=frozenset({EFFECT, "test.poison", "test.slow"}),
        job_worker_max_attempts=3,
        job_worker_backoff_seconds=0.05,
        job_worker_ack_wait_seconds=1,
        **stream.settings,
    )
    dsn = str(settings.assistant_db_dsn)
    await migrate(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(EFFECTS_TABLE)
    finally:
        await connection.close()
    return settings
