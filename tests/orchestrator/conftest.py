"""Fixtures for the orchestrator tests: a stream of the test's own and a running orchestrator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import grpc
import pytest

from exobrain.config import Settings
from exobrain.orchestrator import RunningOrchestrator
from exobrain.proto import job_orchestrator_pb2_grpc as pb_grpc

from .support import JobsStream, jobs_stream, orchestrator

JSON_JOB_TYPE = "report.daily"


@pytest.fixture
async def stream(nats_url: str, namespace: str) -> AsyncIterator[JobsStream]:
    async with jobs_stream(nats_url, namespace) as created:
        yield created


@pytest.fixture
def jobs_settings(make_settings: Callable[..., Settings], stream: JobsStream) -> Settings:
    return make_settings(
        job_orchestrator_json_job_types=frozenset({JSON_JOB_TYPE}), **stream.settings
    )


@pytest.fixture
async def running(jobs_settings: Settings) -> AsyncIterator[RunningOrchestrator]:
    async with orchestrator(jobs_settings) as started:
        yield started


@pytest.fixture
async def stub(running: RunningOrchestrator) -> AsyncIterator[pb_grpc.JobOrchestratorAsyncStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        yield pb_grpc.JobOrchestratorStub(channel)
