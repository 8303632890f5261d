"""Jobs on NATS JetStream: validation, the envelope and its publisher, shared by every producer.

The orchestrator's ``EnqueueJob`` and the legacy direct-publish path both go
through :class:`JobPublisher`, so a rollback of the rollout flag changes the
transport and nothing else: same validation, same envelope, same dedupe.
"""

from .envelope import envelope, job_id_for, knowledge_message, knowledge_payload, subject
from .errors import EnqueueUnavailable, InvalidJob
from .publisher import (
    Enqueue,
    EnqueueBatch,
    Enqueued,
    JobPublisher,
    job_publisher,
    one_at_a_time,
    stream_subjects,
)
from .validation import KNOWLEDGE_UPDATE, validate

__all__ = [
    "KNOWLEDGE_UPDATE",
    "Enqueue",
    "EnqueueBatch",
    "EnqueueUnavailable",
    "Enqueued",
    "InvalidJob",
    "JobPublisher",
    "envelope",
    "job_id_for",
    "job_publisher",
    "knowledge_message",
    "knowledge_payload",
    "one_at_a_time",
    "stream_subjects",
    "subject",
    "validate",
]
