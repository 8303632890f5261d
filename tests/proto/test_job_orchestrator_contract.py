"""The EnqueueJob wire contract: the reference's field numbers, additions only."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import Descriptor

from exobrain.proto import job_orchestrator_pb2 as pb

CONTRACT = {
    pb.EnqueueJobRequest: {"job_type": 1, "user_id": 2, "knowledge_update": 3, "payload_json": 4},
    pb.KnowledgeUpdatePayload: {"journal_reference": 1, "messages": 2, "requested_by_user_id": 3},
    pb.KnowledgeUpdateMessage: {"role": 1, "content": 2, "sequence": 3, "created_at": 4},
    pb.EnqueueJobReply: {"job_id": 1},
}


@pytest.mark.parametrize("message", list(CONTRACT), ids=lambda message: message.__name__)
def test_reference_field_numbers_are_kept(message: type) -> None:
    descriptor: Descriptor = message.DESCRIPTOR  # type: ignore[attr-defined]
    numbers = {field.name: field.number for field in descriptor.fields}
    assert numbers.items() >= CONTRACT[message].items()
    added = set(numbers) - set(CONTRACT[message])
    assert all(numbers[name] > max(CONTRACT[message].values()) for name in added)


def test_service_is_the_reference_method() -> None:
    service = pb.DESCRIPTOR.services_by_name["JobOrchestrator"]
    assert service.full_name == "exobrain.job_orchestrator.v1.JobOrchestrator"
    assert service.methods_by_name["EnqueueJob"].input_type.name == "EnqueueJobRequest"


def test_payload_is_one_of_typed_or_json() -> None:
    request = pb.EnqueueJobRequest(
        job_type="knowledge.update",
        user_id="u1",
        knowledge_update=pb.KnowledgeUpdatePayload(
            journal_reference="2025/01/14",
            messages=[pb.KnowledgeUpdateMessage(role="user", content="hi", sequence=1)],
        ),
    )
    request.payload_json = "{}"
    assert request.WhichOneof("payload") == "payload_json"
    assert not request.HasField("knowledge_update")
    decoded = pb.EnqueueJobRequest.FromString(request.SerializeToString())
    assert decoded == request
