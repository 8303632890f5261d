"""Journal reads: entries, message pages, search. Every statement filters by the owner.

The JournalActor is the only writer of messages; these are the reads that need
no ordering with it (DESIGN.md §3), plus the one race-free ``create`` of an
empty entry. A journal of another user is indistinguishable from a missing one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

#: Stands in for "no cursor": every sequence is below it, so one plan serves both.
_NO_SEQUENCE = 2**63 - 1

_ENTRY_COLUMNS = (
    "c.id, c.reference, c.created_at, c.updated_at, c.last_message_at, c.message_count, c.status"
)


@dataclass(frozen=True, slots=True)
class Entry:
    id: uuid.UUID
    reference: str
    created_at: datetime
    updated_at: datetime
    last_message_at: datetime | None
    message_count: int
    status: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    tool_call_id: str
    title: str
    description: str
    response: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class Message:
    id: uuid.UUID
    role: str
    content: str
    sequence: int
    created_at: datetime
    metadata: dict[str, Any]
    tool_calls: list[ToolCall]


@dataclass(frozen=True, slots=True)
class SearchHit(Entry):
    #: HTML-safe text around the best match, matches in ``<mark>``; None for reference matches.
    snippet: str | None


def _entry(row: asyncpg.Record) -> Entry:
    return Entry(*row.values())


async def list_entries(
    pool: asyncpg.Pool, user_id: uuid.UUID, *, limit: int, before: str | None
) -> list[Entry]:
    """The user's entries, newest reference first, strictly older than ``before``."""
    rows = await pool.fetch(
        f"""
        SELECT {_ENTRY_COLUMNS} FROM conversations c
        WHERE c.user_id = $1 AND ($2::text IS NULL OR c.reference < $2)
        ORDER BY c.reference DESC LIMIT $3
        """,  # noqa: S608 - a constant column list, no input
        user_id,
        before,
        limit,
    )
    return [_entry(row) for row in rows]


async def find_entry(pool: asyncpg.Pool, user_id: uuid.UUID, reference: str) -> Entry | None:
    row = await pool.fetchrow(
        f"SELECT {_ENTRY_COLUMNS} FROM conversations c WHERE c.user_id = $1 AND c.reference = $2",  # noqa: S608
        user_id,
        reference,
    )
    return None if row is None else _entry(row)


async def ensure_entry(pool: asyncpg.Pool, user_id: uuid.UUID, reference: str) -> Entry:
    """The entry, created empty if missing; concurrent callers all get the same row.

    ``DO UPDATE`` rather than ``DO NOTHING``: it waits for a racing insert and
    returns that row, where a follow-up SELECT could miss it under its snapshot.
    """
    row = await pool.fetchrow(
        f"""
        INSERT INTO conversations AS c (user_id, reference) VALUES ($1, $2)
        ON CONFLICT (user_id, reference) DO UPDATE SET status = c.status
        RETURNING {_ENTRY_COLUMNS}
        """,  # noqa: S608
        user_id,
        reference,
    )
    assert row is not None
    return _entry(row)


async def list_messages(
    pool: asyncpg.Pool,
    user_id: uuid.UUID,
    reference: str,
    *,
    limit: int | None,
    before: int | None = None,
    newest_first: bool = True,
) -> list[Message] | None:
    """Messages of one journal by ``sequence`` with their tool calls; None if no such journal.

    One statement: the journal's existence, the page, and each message's tool
    calls (aggregated in ``position`` order), so a page costs one round trip.
    The messages' owner is checked on the page, not inside it: a filter inside
    makes the planner sort every message below the cursor (four times slower)
    instead of walking ``(conversation_id, sequence)`` for ``limit`` rows.
    """
    order = "DESC" if newest_first else "ASC"
    rows = await pool.fetch(
        f"""
        SELECT m.id, m.role, m.content, m.sequence, m.created_at, m.metadata, m.tool_calls
        FROM conversations c
        LEFT JOIN LATERAL (
            SELECT m.id, m.user_id, m.role, m.content, m.sequence, m.created_at, m.metadata,
                   (SELECT coalesce(json_agg(json_build_object(
                               'id', t.id, 'tool_call_id', t.tool_call_id, 'title', t.title,
                               'description', t.description, 'response', t.response,
                               'error', t.error) ORDER BY t.position, t.created_at, t.id), '[]')
                    FROM tool_calls t WHERE t.message_id = m.id) AS tool_calls
            FROM messages m
            WHERE m.conversation_id = c.id AND m.sequence < $3
            ORDER BY m.sequence {order} LIMIT $4
        ) m ON m.user_id = $1
        WHERE c.user_id = $1 AND c.reference = $2
        ORDER BY m.sequence {order}
        """,  # noqa: S608 - the order is one of two constants
        user_id,
        reference,
        _NO_SEQUENCE if before is None else before,
        limit,
    )
    if not rows:
        return None
    return [  # by position: a third cheaper than by name, for 100 rows a page
        Message(id_, role, content, sequence, created_at, metadata, [ToolCall(**c) for c in calls])
        for id_, role, content, sequence, created_at, metadata, calls in rows
        if id_ is not None  # the journal exists but has no message in range
    ]
