"""The ``jobs`` table (migration 0008): one row per job, moved on by every transition.

Every write is an upsert that never leaves a terminal state: a job recorded
``SUCCEEDED`` or ``FAILED_FINAL`` stays so whatever a late or duplicate
delivery tries, and a job nobody recorded at enqueue time (another producer)
gets its row from its first transition.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from exobrain.store.pool import Connection

from .lifecycle import JobState, JobStatus

_COLUMNS = "id::text, job_type, user_id, state, attempt, detail, version, updated_at"
#: A pool or a connection (inside the caller's transaction).
Executor = asyncpg.Pool | Connection


def _status(row: asyncpg.Record | tuple[Any, ...]) -> JobStatus:
    job_id, job_type, user_id, state, attempt, detail, version, at = row
    return JobStatus(job_id, job_type, user_id, JobState(state), attempt, detail, version, at)


async def record_enqueued(
    connection: Connection, job_type: str, jobs: Sequence[tuple[str, str]]
) -> None:
    """``(job_id, user_id)`` pairs as ``ENQUEUED_OR_PENDING``; known jobs stay as they are."""
    await connection.execute(
        """
        INSERT INTO jobs (id, job_type, user_id)
        SELECT id, $1, user_id FROM unnest($2::uuid[], $3::text[]) AS j(id, user_id)
        ON CONFLICT (id) DO NOTHING
        """,
        job_type,
        [job_id for job_id, _ in jobs],
        [user_id for _, user_id in jobs],
    )


async def refuse(executor: Executor, refusals: Sequence[tuple[str, str]]) -> None:
    """``(job_id, reason)``: jobs the orchestrator refused for good never run: ``FAILED_FINAL``."""
    await executor.execute(
        """
        UPDATE jobs AS j
        SET state = 'FAILED_FINAL', detail = r.reason, finished_at = now(), updated_at = now(),
            version = j.version + 1
        FROM unnest($1::uuid[], $2::text[]) AS r(id, reason)
        WHERE j.id = r.id AND j.state NOT IN ('SUCCEEDED', 'FAILED_FINAL')
        """,
        [job_id for job_id, _ in refusals],
        [reason for _, reason in refusals],
    )


async def transition(
    executor: Executor,
    *,
    job_id: str,
    job_type: str,
    user_id: str,
    state: JobState,
    attempt: int,
    detail: str | None = None,
) -> JobStatus | None:
    """Move the job to ``state``; ``None`` when it had already finished."""
    row = await executor.fetchrow(
        f"""
        INSERT INTO jobs AS j (id, job_type, user_id, state, attempt, detail, started_at,
                               finished_at)
        VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $4 = 'STARTED' THEN now() END,
                CASE WHEN $7 THEN now() END)
        ON CONFLICT (id) DO UPDATE
        SET state = excluded.state, attempt = excluded.attempt, detail = excluded.detail,
            started_at = coalesce(excluded.started_at, j.started_at),
            finished_at = excluded.finished_at, updated_at = now(), version = j.version + 1
        WHERE j.state NOT IN ('SUCCEEDED', 'FAILED_FINAL')
        RETURNING {_COLUMNS}
        """,  # noqa: S608 - only the fixed column list is interpolated
        uuid.UUID(job_id),
        job_type,
        user_id,
        state.value,
        attempt,
        detail,
        state.terminal,
    )
    return None if row is None else _status(row)


async def lock_unfinished(connection: Connection, job_id: str) -> bool:
    """Lock the job's row for the caller's transaction; whether it is still unfinished.

    Two deliveries of one job (a redelivery while the first still runs) queue
    here: the second sees the first's outcome and does not settle it again. A
    job with no row yet is unfinished.
    """
    state = await connection.fetchval(
        "SELECT state FROM jobs WHERE id = $1 FOR UPDATE", uuid.UUID(job_id)
    )
    return state is None or not JobState(state).terminal


async def current(executor: Executor, job_id: uuid.UUID) -> JobStatus | None:
    row = await executor.fetchrow(
        f"SELECT {_COLUMNS} FROM jobs WHERE id = $1",  # noqa: S608 - fixed column list
        job_id,
    )
    return None if row is None else _status(row)


async def timeline(
    executor: Executor, job_id: uuid.UUID
) -> tuple[JobStatus, dict[str, datetime | None]] | None:
    """The job's status and when it was created, first started and finished."""
    row = await executor.fetchrow(
        f"SELECT {_COLUMNS}, created_at, started_at, finished_at FROM jobs WHERE id = $1",  # noqa: S608
        job_id,
    )
    if row is None:
        return None
    return _status(tuple(row)[:8]), {
        "created_at": row[8],
        "started_at": row[9],
        "finished_at": row[10],
    }
