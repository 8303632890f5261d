"""EnqueueJob against a real gRPC server and real JetStream: envelopes, dedupe, validation."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import grpc
import nats
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from exobrain.config import Settings
from exobrain.jobs import EnqueueUnavailable, InvalidJob, job_id_for, stream_subjects
from exobrain.orchestrator import SERVICE_NAME, OrchestratorClient, RunningOrchestrator
from exobrain.proto import job_orchestrator_pb2 as pb

from .conftest import JSON_JOB_TYPE
from .support import JobsStream, orchestrator

if TYPE_CHECKING:
    from exobrain.proto.job_orchestrator_pb2_grpc import JobOrchestratorAsyncStub as Stub

USER = str(uuid.uuid4())


def message(**overrides: Any) -> pb.KnowledgeUpdateMessage:
    fields: dict[str, Any] = {
        "role": "user",
        "content": "I planted tomatoes",
        "sequence": 1,
        "created_at": "2026-11-24T09:30:00.000000Z",
    }
    return pb.KnowledgeUpdateMessage(**(fields | overrides))


def knowledge_request(
    *messages: pb.KnowledgeUpdateMessage, key: str = "", **payload: Any
) -> pb.EnqueueJobRequest:
    fields: dict[str, Any] = {"journal_reference": "2026/11/24", "requested_by_user_id": USER}
    return pb.EnqueueJobRequest(
        job_type="knowledge.update",
        user_id=USER,
        idempotency_key=key,
        knowledge_update=pb.KnowledgeUpdatePayload(
            messages=messages or [message()], **(fields | payload)
        ),
    )


async def test_a_job_lands_on_its_subject_in_the_contract_envelope(
    stub: Stub, stream: JobsStream
) -> None:
    key = str(uuid.uuid4())
    reply = await stub.EnqueueJob(knowledge_request(message(), message(sequence=2), key=key))
    assert reply.job_id == job_id_for(key)
    [published] = await stream.published()
    assert published.subject == f"{stream.prefix}.knowledge.update.requested"
    assert published.msg_id == key
    envelope = published.envelope
    assert envelope.pop("created_at").endswith("Z")
    assert envelope == {
        "schema_version": 1,
        "job_id": reply.job_id,
        "job_type": "knowledge.update",
        "correlation_id": USER,
        "payload": {
            "journal_reference": "2026/11/24",
            "messages": [
                {
                    "role": "user",
                    "content": "I planted tomatoes",
                    "sequence": sequence,
                    "created_at": "2026-11-24T09:30:00.000000Z",
                }
                for sequence in (1, 2)
            ],
            "requested_by_user_id": USER,
        },
        "attempt": 0,
    }


async def test_a_repeated_key_returns_the_same_job_and_adds_nothing(
    stub: Stub, stream: JobsStream
) -> None:
    key = str(uuid.uuid4())
    first = await stub.EnqueueJob(knowledge_request(key=key))
    again = await stub.EnqueueJob(knowledge_request(key=key))
    other = await stub.EnqueueJob(knowledge_request(key=str(uuid.uuid4())))
    assert first.job_id == again.job_id != other.job_id
    assert [p.envelope["job_id"] for p in await stream.published()] == [
        first.job_id,
        other.job_id,
    ]


async def test_other_known_types_take_a_json_object(stub: Stub, stream: JobsStream) -> None:
    request = pb.EnqueueJobRequest(
        job_type=JSON_JOB_TYPE, user_id=USER, payload_json='{"day": "2026/11/24"}'
    )
    reply = await stub.EnqueueJob(request)
    [published] = await stream.published()
    assert published.subject == f"{stream.prefix}.{JSON_JOB_TYPE}.requested"
    assert published.msg_id is None  # no key: no dedupe, a fresh job id
    assert (published.envelope["job_id"], published.envelope["payload"]) == (
        reply.job_id,
        {"day": "2026/11/24"},
    )


def _json(job_type: str = JSON_JOB_TYPE, payload: str = "{}") -> pb.EnqueueJobRequest:
    return pb.EnqueueJobRequest(job_type=job_type, user_id=USER, payload_json=payload)


INVALID = {
    "unknown job_type": (_json("knowledge.rebuild"), "unknown job_type"),
    "malformed job_type": (_json("Jobs > all"), "dotted lower-case"),
    "no user_id": (pb.EnqueueJobRequest(job_type=JSON_JOB_TYPE, payload_json="{}"), "user_id"),
    "no payload": (pb.EnqueueJobRequest(job_type=JSON_JOB_TYPE, user_id=USER), "payload_json"),
    "JSON for knowledge.update": (_json("knowledge.update"), "typed knowledge_update"),
    "typed payload for a JSON type": (
        pb.EnqueueJobRequest(
            job_type=JSON_JOB_TYPE,
            user_id=USER,
            knowledge_update=knowledge_request().knowledge_update,
        ),
        "JSON object in payload_json",
    ),
    "payload_json not JSON": (_json(payload="{nope"), "not valid JSON"),
    "payload_json not an object": (_json(payload="[1, 2]"), "must be a JSON object"),
    "bad idempotency key": (knowledge_request(key="has space"), "idempotency_key"),
    "malformed reference": (knowledge_request(journal_reference="2026-11-24"), "YYYY/MM/DD"),
    "impossible date": (knowledge_request(journal_reference="2026/02/30"), "YYYY/MM/DD"),
    "no requester": (knowledge_request(requested_by_user_id=""), "requested_by_user_id"),
    "no messages": (
        pb.EnqueueJobRequest(
            job_type="knowledge.update",
            user_id=USER,
            knowledge_update=pb.KnowledgeUpdatePayload(
                journal_reference="2026/11/24", requested_by_user_id=USER
            ),
        ),
        "at least one message",
    ),
    "unknown role": (knowledge_request(message(role="robot")), "messages[0].role"),
    "zero sequence": (knowledge_request(message(sequence=0)), "sequence must be positive"),
    "out of order": (
        knowledge_request(message(sequence=2), message(sequence=1)),
        "messages[1].sequence",
    ),
    "bad timestamp": (knowledge_request(message(created_at="yesterday")), "created_at"),
    "timestamp without zone": (
        knowledge_request(message(created_at="2026-11-24T09:30:00")),
        "created_at",
    ),
}


@pytest.mark.parametrize(("request_", "reason"), INVALID.values(), ids=list(INVALID))
async def test_invalid_requests_are_refused_with_invalid_argument(
    stub: Stub, stream: JobsStream, request_: pb.EnqueueJobRequest, reason: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.EnqueueJob(request_)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in (refused.value.details() or "")
    assert await stream.published() == []


async def test_health_reports_serving_until_shutdown(running: RunningOrchestrator) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in (SERVICE_NAME, ""):
            response = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert response.status == health_pb2.HealthCheckResponse.SERVING
    client = OrchestratorClient(f"127.0.0.1:{running.port}", deadline=2.0)
    await client.check()
    await running.stop(grace=0)
    with pytest.raises(ConnectionError):
        await client.check()
    await client.close()


async def test_a_second_orchestrator_uses_the_existing_stream(
    running: RunningOrchestrator, stream: JobsStream, jobs_settings: Settings
) -> None:
    async with orchestrator(jobs_settings):
        pass
    client = await nats.connect(stream.nats_url)
    info = await client.jetstream().stream_info(stream.name)
    await client.close()
    assert info.config.subjects == stream_subjects(stream.prefix)


async def test_the_client_retries_until_the_orchestrator_comes_up(
    jobs_settings: Settings, stream: JobsStream, down_address: str
) -> None:
    address = down_address
    client = OrchestratorClient(address, deadline=0.3)
    request = knowledge_request(key=str(uuid.uuid4()))
    with pytest.raises(EnqueueUnavailable, match="UNAVAILABLE"):
        await client.enqueue(request)
    async with orchestrator(jobs_settings, address):
        patient = OrchestratorClient(address, deadline=10.0)
        assert await patient.enqueue(request) == job_id_for(request.idempotency_key)
        await patient.close()
    await client.close()
    assert len(await stream.published()) == 1


async def test_invalid_argument_is_final_for_the_client(running: RunningOrchestrator) -> None:
    client = OrchestratorClient(f"127.0.0.1:{running.port}", deadline=5.0)
    with pytest.raises(InvalidJob, match="unknown job_type"):
        await client.enqueue(_json("nobody.reads.this"))
    await client.close()
