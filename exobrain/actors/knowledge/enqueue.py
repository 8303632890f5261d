"""Enqueue outbox rows: journals in parallel, each journal's jobs in the order they were cut.

Runs on the event loop (the actor reaches it with ``run_on_loop``). A job the
orchestrator refuses is final; one it cannot take now stops its journal, whose
remaining rows stay pending so that order is kept when they are retried.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Sequence

from exobrain.jobs import KNOWLEDGE_UPDATE, Enqueue, EnqueueUnavailable, InvalidJob
from exobrain.proto import job_orchestrator_pb2 as pb

from .store import Dispatch, Outcome

#: Journals enqueued at once.
CONCURRENCY = 32


def request_for(dispatch: Dispatch) -> pb.EnqueueJobRequest:
    payload = dispatch.payload
    request = pb.EnqueueJobRequest(
        job_type=KNOWLEDGE_UPDATE, user_id=str(dispatch.user_id), idempotency_key=str(dispatch.id)
    )
    update = request.knowledge_update
    update.journal_reference = payload["journal_reference"]
    update.requested_by_user_id = payload["requested_by_user_id"]
    add = update.messages.add  # in place: a message built apart is copied into its parent
    for message in payload["messages"]:
        add(**message)
    return request


async def enqueue_all(enqueue: Enqueue, dispatches: Sequence[Dispatch]) -> list[Outcome]:
    """One outcome per row, in the rows' order."""
    journals: dict[tuple[uuid.UUID, str], list[Dispatch]] = defaultdict(list)
    for dispatch in dispatches:
        journals[(dispatch.user_id, dispatch.journal_reference)].append(dispatch)
    outcomes: dict[uuid.UUID, Outcome] = {}
    slots = asyncio.Semaphore(CONCURRENCY)

    async def enqueue_journal(rows: list[Dispatch]) -> None:
        async with slots:
            for index, dispatch in enumerate(rows):
                try:
                    job_id = await enqueue(request_for(dispatch))
                except InvalidJob as exc:
                    outcomes[dispatch.id] = Outcome(dispatch.id, "failed", error=str(exc))
                    continue
                except EnqueueUnavailable as exc:
                    for waiting in rows[index:]:
                        outcomes[waiting.id] = Outcome(waiting.id, "pending", error=str(exc))
                    return
                outcomes[dispatch.id] = Outcome(dispatch.id, "enqueued", job_id)

    await asyncio.gather(*(enqueue_journal(rows) for rows in journals.values()))
    return [outcomes[dispatch.id] for dispatch in dispatches]
