"""The JetStream envelope (DESIGN.md §5) and the knowledge-update payload inside it.

The payload is built here and only here, key order included: the chunker
estimates tokens on exactly the text that :func:`envelope` later carries.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

SCHEMA_VERSION = 1
#: job_id = uuid5(this, idempotency key): a repeated enqueue gets the first one's id.
JOB_ID_NAMESPACE = uuid.UUID("5f0c4d8e-3b7a-5d2e-9c41-6a8b0e7f1d23")


def job_id_for(idempotency_key: str) -> str:
    """A job id derived from the key, or a fresh one when the producer gave no key."""
    if not idempotency_key:
        return str(uuid.uuid4())
    return str(uuid.uuid5(JOB_ID_NAMESPACE, idempotency_key))


def subject(prefix: str, job_type: str) -> str:
    return f"{prefix}.{job_type}.requested"


def knowledge_message(role: str, content: str, sequence: int, created_at: str) -> dict[str, Any]:
    return {"role": role, "content": content, "sequence": sequence, "created_at": created_at}


def knowledge_payload(
    journal_reference: str, messages: list[dict[str, Any]], requested_by_user_id: str
) -> dict[str, Any]:
    return {
        "journal_reference": journal_reference,
        "messages": messages,
        "requested_by_user_id": requested_by_user_id,
    }


def envelope(
    *, job_id: str, job_type: str, user_id: str, payload: Any, created_at: datetime | None = None
) -> bytes:
    return orjson.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "job_id": job_id,
            "job_type": job_type,
            "correlation_id": user_id,
            "payload": payload,
            "attempt": 0,
            "created_at": (created_at or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        }
    )
