"""``EnqueueJobs``: a batch published in order, each job as ``EnqueueJob`` would, and the
client's fall-back to one job at a time for an orchestrator without it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import nats
import pytest

from exobrain.config import Settings
from exobrain.jobs import EnqueueUnavailable, InvalidJob, JobPublisher, job_id_for, job_publisher
from exobrain.orchestrator import (
    SERVICE_NAME,
    JobOrchestratorService,
    OrchestratorClient,
    RunningOrchestrator,
)
from exobrain.proto import job_orchestrator_pb2 as pb

from .support import JobsStream
from .test_service import knowledge_request, message


@pytest.fixture
async def client(running: RunningOrchestrator) -> AsyncIterator[OrchestratorClient]:
    created = OrchestratorClient(f"127.0.0.1:{running.port}", deadline=5.0)
    yield created
    await created.close()


@pytest.fixture
async def publisher(jobs_settings: Settings) -> AsyncIterator[JobPublisher]:
    connection = await nats.connect(str(jobs_settings.exobrain_nats_url))
    created = job_publisher(connection, jobs_settings)
    await created.ensure_stream()
    yield created
    await connection.close()


def _without_batches(publisher: JobPublisher) -> grpc.GenericRpcHandler[Any, Any]:
    """An orchestrator from before ``EnqueueJobs`` (or the reference's): EnqueueJob only."""
    enqueue = grpc.unary_unary_rpc_method_handler(
        JobOrchestratorService(publisher).EnqueueJob,
        request_deserializer=pb.EnqueueJobRequest.FromString,
        response_serializer=pb.EnqueueJobReply.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(SERVICE_NAME, {"EnqueueJob": enqueue})


async def test_a_batch_is_published_in_order_and_refuses_only_the_invalid_job(
    client: OrchestratorClient, stream: JobsStream
) -> None:
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    outcomes = await client.enqueue_batch(
        [
            knowledge_request(key=first),
            knowledge_request(message(role="robot"), key=str(uuid.uuid4())),
            knowledge_request(key=second),
            knowledge_request(key=first),  # a repeat: the first one's id, nothing added
        ]
    )
    assert outcomes[0] == outcomes[3] == job_id_for(first)
    assert isinstance(outcomes[1], InvalidJob)
    assert "messages[0].role" in str(outcomes[1])
    assert outcomes[2] == job_id_for(second)
    assert [published.msg_id for published in await stream.published()] == [first, second]


async def test_an_orchestrator_without_batches_gets_the_jobs_one_at_a_time(
    publisher: JobPublisher, stream: JobsStream
) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_without_batches(publisher),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    client = OrchestratorClient(f"127.0.0.1:{port}", deadline=5.0)
    keys = [str(uuid.uuid4()) for _ in range(3)]
    try:
        first = await client.enqueue_batch([knowledge_request(key=key) for key in keys[:2]])
        then = await client.enqueue_batch([knowledge_request(key=keys[2])])
    finally:
        await client.close()
        await server.stop(None)
    assert [*first, *then] == [job_id_for(key) for key in keys]
    assert [published.msg_id for published in await stream.published()] == keys


async def test_a_batch_jetstream_does_not_take_is_unavailable(
    jobs_settings: Settings, stream: JobsStream
) -> None:
    """No stream behind the subjects: each job is unavailable (to retry), none refused."""
    connection = await nats.connect(str(jobs_settings.exobrain_nats_url))
    publisher = job_publisher(connection, jobs_settings)  # its stream is never created
    try:
        outcomes = await publisher.enqueue_batch(
            [knowledge_request(key=str(uuid.uuid4())) for _ in range(2)]
        )
    finally:
        await connection.close()
    assert [type(outcome) for outcome in outcomes] == [EnqueueUnavailable] * 2


async def test_an_orchestrator_that_is_down_leaves_the_whole_batch_unavailable(
    down_address: str,
) -> None:
    client = OrchestratorClient(down_address, deadline=0.3)
    outcomes = await client.enqueue_batch([knowledge_request(key=str(uuid.uuid4()))] * 2)
    await client.close()
    assert [type(outcome) for outcome in outcomes] == [EnqueueUnavailable] * 2
