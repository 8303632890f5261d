"""The ``knowledge.update`` job: every message it carries becomes a passage in Qdrant.

Idempotent by construction: a passage's point id derives from user, journal,
sequence and part, so running a job again overwrites what it stored.
"""

from __future__ import annotations

import uuid

from exobrain.jobs import job_id_for
from exobrain.jobs.handling import Handler, JobContext

from ._passages import Passage, PassageStore


def update_handler(passages: PassageStore) -> Handler:
    async def handle(context: JobContext) -> str:
        job, payload = context.job, context.job.payload
        messages = payload["messages"]
        part = await _part(context) if len(messages) == 1 else 0
        await passages.store(
            [
                Passage(
                    user_id=job.user_id,
                    journal_reference=payload["journal_reference"],
                    sequence=message["sequence"],
                    part=part,
                    role=message["role"],
                    created_at=message["created_at"],
                    text=message["content"],
                )
                for message in messages
            ]
        )
        return f"{len(messages)} passage(s) stored"

    return handle


async def _part(context: JobContext) -> int:
    """Which part of a message cut across jobs this job carries (0: the whole message).

    The envelope does not say; the outbox row the job was enqueued from does,
    and the job id derives from that row's id. Jobs of other producers are whole.
    """
    job = context.job
    try:
        user_id = uuid.UUID(job.user_id)
    except ValueError:
        return 0
    rows = await context.connection.fetch(
        "SELECT id, part FROM knowledge_dispatches"
        " WHERE user_id = $1 AND journal_reference = $2 AND part > 0",
        user_id,
        job.payload["journal_reference"],
    )
    return next((part for row_id, part in rows if job_id_for(str(row_id)) == job.id), 0)
