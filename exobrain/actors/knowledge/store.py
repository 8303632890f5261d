"""The KnowledgeDispatchActor's SQL: uncommitted messages in, outbox rows out.

A journal's messages are committed to the knowledge base up to its watermark
(``knowledge_watermarks``). Selecting and chunking happen outside any
transaction; the transaction that writes the outbox moves each selected
journal's watermark to the last sequence selected, provided it is still where
the selection saw it. If a concurrent dispatch (another process) moved one
first, the write rolls back and the actor selects again: every message is
dispatched once in total, and the row locks are held only for the write.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg
import orjson

from exobrain.jobs import KNOWLEDGE_UPDATE, job_id_for
from exobrain.jobs.records import record_enqueued, refuse

from .chunking import Chunk, Entry

OutcomeStatus = Literal["enqueued", "pending", "failed"]


@dataclass(frozen=True, slots=True)
class Dispatch:
    """An outbox row to enqueue; its id is the job's idempotency key."""

    id: uuid.UUID
    user_id: uuid.UUID
    journal_reference: str
    payload: dict[str, Any]

    @property
    def job_id(self) -> str:
        """The id its job gets: known before the orchestrator answers."""
        return job_id_for(str(self.id))


@dataclass(frozen=True, slots=True)
class Outcome:
    id: uuid.UUID
    status: OutcomeStatus
    job_id: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Watermark:
    """A journal's watermark as the selection saw it, and where its dispatch moves it."""

    conversation_id: uuid.UUID
    seen: int
    through: int


@dataclass(frozen=True, slots=True)
class Selection:
    """Uncommitted messages in journal, then sequence order; a watermark per journal."""

    entries: list[Entry]
    watermarks: list[Watermark]


_OUTBOX_COLUMNS = (
    "id",
    "user_id",
    "journal_reference",
    "message_ids",
    "part",
    "position",
    "payload",
    "estimated_tokens",
)


class AlreadyDispatched(RuntimeError):
    """A concurrent dispatch moved a selected journal's watermark: select again."""


async def uncommitted(pool: asyncpg.Pool, user_id: uuid.UUID, reference: str | None) -> Selection:
    """One statement, so that the watermarks and the messages above them are one snapshot.

    ``committed_to_knowledge_base`` is no longer written; it still marks the
    messages committed out of order before watermarks existed (migration 0004).
    """
    rows = await pool.fetch(
        """
        SELECT c.id, w.through, m.id, c.reference, m.role, m.content, m.sequence,
               to_char(m.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
        FROM conversations c
        CROSS JOIN LATERAL (
            SELECT coalesce(max(k.committed_through), 0) AS through
            FROM knowledge_watermarks k WHERE k.conversation_id = c.id
        ) w
        CROSS JOIN LATERAL (  -- per journal: an index range scan at any table size
            SELECT m.id, m.role, m.content, m.sequence, m.created_at FROM messages m
            WHERE m.conversation_id = c.id AND m.sequence > w.through
              AND NOT m.committed_to_knowledge_base
            ORDER BY m.sequence
            OFFSET 0  -- keeps the planner from flattening this into a hash join over all messages
        ) m
        WHERE c.user_id = $1 AND ($2::text IS NULL OR c.reference = $2)
        ORDER BY c.reference, m.sequence
        """,
        user_id,
        reference,
    )
    watermarks: dict[uuid.UUID, Watermark] = {}
    for conversation_id, seen, _, _, _, _, sequence, _ in rows:  # the last one of each journal
        watermarks[conversation_id] = Watermark(conversation_id, seen, sequence)
    return Selection([Entry(*row[2:]) for row in rows], list(watermarks.values()))


async def write(
    pool: asyncpg.Pool, user_id: uuid.UUID, selection: Selection, chunks: Sequence[Chunk]
) -> list[Dispatch]:
    """One outbox row per chunk, its job, and the journals' watermarks moved, in one transaction.

    Each job is recorded ``ENQUEUED_OR_PENDING`` under the id the orchestrator
    will derive from the row id, so it can be watched before any worker sees it.

    Watermarks are taken in reference order, as every dispatch takes them, so
    two dispatches of one user cannot deadlock.
    """
    watermarks = selection.watermarks
    dispatches = [
        Dispatch(uuid.uuid4(), user_id, chunk.journal_reference, chunk.fields) for chunk in chunks
    ]
    async with pool.acquire() as connection, connection.transaction():
        status = await connection.execute(
            """
            INSERT INTO knowledge_watermarks AS k (conversation_id, committed_through)
            SELECT * FROM unnest($1::uuid[], $3::bigint[])
            ON CONFLICT (conversation_id)
            DO UPDATE SET committed_through = excluded.committed_through
            WHERE k.committed_through = (
                SELECT s.seen FROM unnest($1::uuid[], $2::bigint[]) AS s(conversation_id, seen)
                WHERE s.conversation_id = k.conversation_id
            )
            """,
            [watermark.conversation_id for watermark in watermarks],
            [watermark.seen for watermark in watermarks],
            [watermark.through for watermark in watermarks],
        )
        if int(status.rpartition(" ")[2]) != len(watermarks):
            raise AlreadyDispatched(f"{user_id}: messages were dispatched concurrently")
        await connection.copy_records_to_table(  # one COPY: ~9 MB for 10,000 messages
            "knowledge_dispatches",
            columns=_OUTBOX_COLUMNS,
            records=[
                (
                    dispatch.id,
                    user_id,
                    chunk.journal_reference,
                    chunk.message_ids,
                    chunk.part,
                    position,
                    chunk.payload,
                    chunk.tokens,
                )
                for position, (dispatch, chunk) in enumerate(zip(dispatches, chunks, strict=True))
            ],
        )
        jobs = [(dispatch.job_id, str(user_id)) for dispatch in dispatches]
        await record_enqueued(connection, KNOWLEDGE_UPDATE, jobs)
    return dispatches


async def pending(
    pool: asyncpg.Pool, limit: int, *, besides: Collection[uuid.UUID] = ()
) -> list[Dispatch]:
    """The oldest pending rows, but for ``besides`` (rows whose enqueue is under way)."""
    rows = await pool.fetch(
        "SELECT id, user_id, journal_reference, payload FROM knowledge_dispatches"
        " WHERE status = 'pending' AND id <> ALL($2::uuid[])"
        " ORDER BY created_at, position LIMIT $1",
        limit,
        list(besides),
    )
    return [
        Dispatch(row_id, user_id, reference, orjson.loads(payload))
        for row_id, user_id, reference, payload in rows
    ]


async def record(pool: asyncpg.Pool, outcomes: Sequence[Outcome]) -> None:
    """Store each attempt's outcome; rows already settled (by another process) stay as they are.

    A refused row's job will never run: it is ``FAILED_FINAL`` with the refusal.
    """
    refusals = [
        (job_id_for(str(o.id)), o.error or "refused") for o in outcomes if o.status == "failed"
    ]
    async with pool.acquire() as connection, connection.transaction():
        await refuse(connection, refusals)
        await connection.execute(
            """
            UPDATE knowledge_dispatches AS d
            SET status = o.status, job_id = coalesce(o.job_id, d.job_id), last_error = o.error,
                attempts = d.attempts + 1, updated_at = now()
            FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
                 AS o(id, status, job_id, error)
            WHERE d.id = o.id AND d.status = 'pending'
            """,
            [outcome.id for outcome in outcomes],
            [outcome.status for outcome in outcomes],
            [outcome.job_id for outcome in outcomes],
            [outcome.error for outcome in outcomes],
        )


async def recent(pool: asyncpg.Pool, user_id: uuid.UUID, limit: int) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        """
        SELECT id::text, journal_reference, part, status, job_id, cardinality(message_ids)
                   AS message_count, estimated_tokens, attempts, last_error, created_at,
               updated_at
        FROM knowledge_dispatches WHERE user_id = $1
        ORDER BY created_at DESC, position LIMIT $2
        """,
        user_id,
        limit,
    )
    return [dict(row) for row in rows]
