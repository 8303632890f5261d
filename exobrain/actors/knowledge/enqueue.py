"""Enqueue outbox rows: journals in parallel, each journal's jobs in batches, in the order cut.

Runs on the event loop (the actor reaches it with ``run_on_loop``). A journal's
jobs go out in batches (one call each, published in order without a round
trip per job); a job the orchestrator refuses is final; one it cannot take now
stops its journal, whose remaining rows stay pending so that order is kept
when they are retried.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence

from exobrain.jobs import KNOWLEDGE_UPDATE, EnqueueBatch, InvalidJob
from exobrain.proto import job_orchestrator_pb2 as pb

from .store import Dispatch, Outcome

#: Journals enqueued at once.
CONCURRENCY = 32
#: Serialised requests per batch, at most (one job may be larger): well under gRPC's
#: 4 MiB message limit, and about 32 jobs of an 8,000-token budget.
BATCH_BYTES = 1 << 20


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


def batches(requests: Sequence[pb.EnqueueJobRequest]) -> Iterator[range]:
    """Consecutive ranges of ``requests`` of at most BATCH_BYTES each (or one request)."""
    start, size = 0, 0
    for index, request in enumerate(requests):
        size += request.ByteSize()
        if size > BATCH_BYTES and index > start:
            yield range(start, index)
            start, size = index, request.ByteSize()
    if start < len(requests):
        yield range(start, len(requests))


async def enqueue_all(enqueue: EnqueueBatch, dispatches: Sequence[Dispatch]) -> list[Outcome]:
    """One outcome per row, in the rows' order."""
    journals: dict[tuple[uuid.UUID, str], list[Dispatch]] = defaultdict(list)
    for dispatch in dispatches:
        journals[(dispatch.user_id, dispatch.journal_reference)].append(dispatch)
    outcomes: dict[uuid.UUID, Outcome] = {}
    slots = asyncio.Semaphore(CONCURRENCY)

    async def enqueue_journal(rows: list[Dispatch]) -> None:
        async with slots:
            requests = [request_for(dispatch) for dispatch in rows]
            for batch in batches(requests):
                results = await enqueue([requests[index] for index in batch])
                for index, result in zip(batch, results, strict=True):
                    row = rows[index].id
                    if isinstance(result, str):
                        outcomes[row] = Outcome(row, "enqueued", result)
                    elif isinstance(result, InvalidJob):
                        outcomes[row] = Outcome(row, "failed", error=str(result))
                    else:  # this row and the journal's later ones wait, in order
                        for waiting in rows[index:]:
                            outcomes[waiting.id] = Outcome(waiting.id, "pending", error=str(result))
                        return

    await asyncio.gather(*(enqueue_journal(rows) for rows in journals.values()))
    return [outcomes[dispatch.id] for dispatch in dispatches]
