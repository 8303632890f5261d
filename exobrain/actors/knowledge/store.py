"""The KnowledgeDispatchActor's SQL: uncommitted messages in, outbox rows out.

Selecting and chunking happen outside any transaction; the transaction that
writes the outbox marks the selected messages committed only where they still
are not. If a concurrent dispatch (another process) committed any of them
first, the write rolls back and the actor selects again: every message is
dispatched once in total, and the row locks are held only for the write.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from .chunking import Chunk, Entry

OutcomeStatus = Literal["enqueued", "pending", "failed"]


@dataclass(frozen=True, slots=True)
class Dispatch:
    """An outbox row to enqueue; its id is the job's idempotency key."""

    id: uuid.UUID
    user_id: uuid.UUID
    journal_reference: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Outcome:
    id: uuid.UUID
    status: OutcomeStatus
    job_id: str | None = None
    error: str | None = None


class AlreadyDispatched(RuntimeError):
    """Some selected messages were committed by a concurrent dispatch: select again."""


async def uncommitted(pool: asyncpg.Pool, user_id: uuid.UUID, reference: str | None) -> list[Entry]:
    rows = await pool.fetch(
        """
        SELECT m.id, c.reference, m.role, m.content, m.sequence,
               to_char(m.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                   AS created_at
        FROM messages m JOIN conversations c ON c.id = m.conversation_id
        WHERE m.user_id = $1 AND NOT m.committed_to_knowledge_base
          AND ($2::text IS NULL OR c.reference = $2)
        ORDER BY c.reference, m.sequence
        """,
        user_id,
        reference,
    )
    return [Entry(*row) for row in rows]


async def write(
    pool: asyncpg.Pool, user_id: uuid.UUID, payloads: Sequence[tuple[Chunk, dict[str, Any]]]
) -> list[Dispatch]:
    """One outbox row per chunk, and its messages marked committed, in one transaction."""
    message_ids = list(dict.fromkeys(i for chunk, _ in payloads for i in chunk.message_ids))
    dispatches = [
        Dispatch(uuid.uuid4(), user_id, chunk.journal_reference, payload)
        for chunk, payload in payloads
    ]
    async with pool.acquire() as connection, connection.transaction():
        status = await connection.execute(
            "UPDATE messages SET committed_to_knowledge_base = true"
            " WHERE id = ANY($1::uuid[]) AND user_id = $2 AND NOT committed_to_knowledge_base",
            message_ids,
            user_id,
        )
        if int(status.rpartition(" ")[2]) != len(message_ids):
            raise AlreadyDispatched(f"{user_id}: messages were dispatched concurrently")
        await connection.executemany(
            """
            INSERT INTO knowledge_dispatches (id, user_id, journal_reference, message_ids, part,
                                              position, payload, estimated_tokens)
            VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8)
            """,
            [
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
                for position, (dispatch, (chunk, _)) in enumerate(
                    zip(dispatches, payloads, strict=True)
                )
            ],
        )
    return dispatches


async def pending(pool: asyncpg.Pool, limit: int) -> list[Dispatch]:
    rows = await pool.fetch(
        "SELECT id, user_id, journal_reference, payload FROM knowledge_dispatches"
        " WHERE status = 'pending' ORDER BY created_at, position LIMIT $1",
        limit,
    )
    return [Dispatch(*row) for row in rows]


async def record(pool: asyncpg.Pool, outcomes: Sequence[Outcome]) -> None:
    """Store each attempt's outcome; rows already settled (by another process) stay as they are."""
    await pool.execute(
        """
        UPDATE knowledge_dispatches AS d
        SET status = o.status, job_id = coalesce(o.job_id, d.job_id), last_error = o.error,
            attempts = d.attempts + 1, updated_at = now()
        FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS o(id, status, job_id, error)
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
