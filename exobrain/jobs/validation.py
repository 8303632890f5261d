"""What the orchestrator accepts: every rejection is final and says what is wrong.

``knowledge.update`` takes the typed payload; other known job types take a
JSON object in ``payload_json``. An unknown type is refused rather than
published to a subject no worker reads.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import date, datetime
from typing import Any

import orjson

from exobrain.proto import job_orchestrator_pb2 as pb

from .envelope import knowledge_message, knowledge_payload
from .errors import InvalidJob

KNOWLEDGE_UPDATE = "knowledge.update"
ROLES = frozenset(("user", "assistant", "system", "tool"))
#: Dotted names in a job type, at most: the jobs stream lists one subject filter per depth.
JOB_TYPE_DEPTH = 4
_JOB_TYPE = re.compile(rf"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){{0,{JOB_TYPE_DEPTH - 1}}}$")
_REFERENCE = re.compile(r"^\d{4}/\d{2}/\d{2}$")
#: NATS header values: printable ASCII, no spaces, and short.
_IDEMPOTENCY_KEY = re.compile(r"^[!-~]{1,128}$")


def validate(request: pb.EnqueueJobRequest, json_job_types: Collection[str] = ()) -> Any:
    """The payload to publish, or :class:`InvalidJob` naming the first problem found."""
    job_type = request.job_type
    if not _JOB_TYPE.match(job_type):
        raise InvalidJob(
            f"job_type {job_type!r} is not a dotted lower-case name"
            f" of at most {JOB_TYPE_DEPTH} names"
        )
    if job_type != KNOWLEDGE_UPDATE and job_type not in json_job_types:
        raise InvalidJob(f"unknown job_type {job_type!r}")
    if not request.user_id.strip():
        raise InvalidJob("user_id is required")
    key = request.idempotency_key
    if key and not _IDEMPOTENCY_KEY.match(key):
        raise InvalidJob("idempotency_key must be 1-128 printable ASCII characters without spaces")
    kind = request.WhichOneof("payload")
    if job_type == KNOWLEDGE_UPDATE:
        if kind != "knowledge_update":
            raise InvalidJob(f"{KNOWLEDGE_UPDATE} takes the typed knowledge_update payload")
        return _knowledge_update(request.knowledge_update)
    if kind != "payload_json":
        raise InvalidJob(f"{job_type} takes a JSON object in payload_json")
    try:
        payload = orjson.loads(request.payload_json)
    except orjson.JSONDecodeError:
        raise InvalidJob("payload_json is not valid JSON") from None
    if not isinstance(payload, dict):
        raise InvalidJob("payload_json must be a JSON object")
    return payload


def _knowledge_update(payload: pb.KnowledgeUpdatePayload) -> dict[str, Any]:
    reference = payload.journal_reference
    if not _REFERENCE.match(reference) or not _is_date(reference):
        raise InvalidJob(f"journal_reference {reference!r} is not a YYYY/MM/DD date")
    if not payload.requested_by_user_id.strip():
        raise InvalidJob("requested_by_user_id is required")
    if not payload.messages:
        raise InvalidJob("a knowledge update needs at least one message")
    messages = []
    previous = 1
    for index, message in enumerate(payload.messages):  # each field read once: ~10,000 a job
        role, content, sequence, created_at = (
            message.role,
            message.content,
            message.sequence,
            message.created_at,
        )
        if role not in ROLES or sequence < previous or not _is_utc_timestamp(created_at):
            raise InvalidJob(_message_problem(f"messages[{index}]", message, previous))
        previous = sequence
        messages.append(knowledge_message(role, content, sequence, created_at))
    return knowledge_payload(reference, messages, payload.requested_by_user_id)


def _message_problem(where: str, message: pb.KnowledgeUpdateMessage, previous: int) -> str:
    if message.role not in ROLES:
        return f"{where}.role must be one of {sorted(ROLES)}, not {message.role!r}"
    if message.sequence <= 0:
        return f"{where}.sequence must be positive"
    if message.sequence < previous:
        return f"{where}.sequence: messages must be in sequence order"
    return f"{where}.created_at must be an RFC 3339 timestamp with a zone"


def _is_date(reference: str) -> bool:
    try:
        date.fromisoformat(reference.replace("/", "-"))
    except ValueError:
        return False
    return True


def _is_utc_timestamp(value: str) -> bool:
    try:
        return datetime.fromisoformat(value).tzinfo is not None
    except ValueError:
        return False
