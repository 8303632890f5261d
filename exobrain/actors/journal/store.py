"""One transaction per batch of appends: the JournalActor's only SQL.

Journals are written in (user, reference) order so that concurrent writers,
in this process or another, always take conversation row locks in the same
order. The conversation row is locked before anything else is read, which
makes it the arbiter of both the sequence counter and idempotency: whoever
holds it sees every committed client_message_id and the current
``last_sequence``.

Each journal is written inside a savepoint: a journal whose rows the database
refuses (its user was deleted, say) fails only its own commands.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

import asyncpg
import orjson

from exobrain.store.pool import Connection

from .messages import AppendMessages, NewMessage, StoredMessage

#: What a batch returns per command: its stored messages, or why its journal was refused.
Outcome = tuple[StoredMessage, ...] | Exception

#: Errors that condemn one journal's writes; anything else fails the whole batch.
_JOURNAL_ERRORS = (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError)


async def write_batch(pool: asyncpg.Pool, commands: Sequence[AppendMessages]) -> list[Outcome]:
    journals: dict[tuple[uuid.UUID, str], list[int]] = defaultdict(list)
    for index, command in enumerate(commands):
        journals[(command.user_id, command.reference)].append(index)
    outcomes: list[Outcome] = [ValueError("not written")] * len(commands)
    async with pool.acquire() as connection, connection.transaction():
        for (user_id, reference), indexes in sorted(journals.items(), key=_lock_order):
            batch = [commands[index] for index in indexes]
            try:
                async with connection.transaction():
                    written = await _write_journal(connection, user_id, reference, batch)
            except _JOURNAL_ERRORS as exc:
                written = [exc] * len(batch)
            for index, outcome in zip(indexes, written, strict=True):
                outcomes[index] = outcome
    return outcomes


def _lock_order(item: tuple[tuple[uuid.UUID, str], list[int]]) -> tuple[str, str]:
    (user_id, reference), _ = item
    return str(user_id), reference


async def _write_journal(
    connection: Connection,
    user_id: uuid.UUID,
    reference: str,
    commands: list[AppendMessages],
) -> list[Outcome]:
    conversation_id, last_sequence = await _lock_conversation(connection, user_id, reference)
    messages = [message for command in commands for message in command.messages]
    known = await _stored_by_client_id(connection, conversation_id, messages)

    fresh: list[tuple[NewMessage, uuid.UUID, int]] = []
    claimed: dict[uuid.UUID, uuid.UUID] = {}  # client id -> row inserted by this batch
    results: list[StoredMessage | tuple[uuid.UUID, bool]] = []  # (row to insert, is a repeat)
    for message in messages:
        client_id = message.client_message_id
        if client_id is not None and client_id in known:
            results.append(known[client_id])
        elif client_id is not None and client_id in claimed:
            results.append((claimed[client_id], True))
        else:
            last_sequence += 1
            row_id = uuid.uuid4()
            fresh.append((message, row_id, last_sequence))
            results.append((row_id, False))
            if client_id is not None:
                claimed[client_id] = row_id

    inserted = await _insert(connection, conversation_id, user_id, fresh) if fresh else {}
    stored = [
        result
        if isinstance(result, StoredMessage)
        else dataclasses.replace(inserted[result[0]], duplicate=result[1])
        for result in results
    ]
    outcomes: list[Outcome] = []
    position = 0
    for command in commands:
        outcomes.append(tuple(stored[position : position + len(command.messages)]))
        position += len(command.messages)
    return outcomes


async def _lock_conversation(
    connection: Connection, user_id: uuid.UUID, reference: str
) -> tuple[uuid.UUID, int]:
    row = await connection.fetchrow(
        """
        INSERT INTO conversations (user_id, reference) VALUES ($1, $2)
        ON CONFLICT (user_id, reference) DO UPDATE SET updated_at = now()
        RETURNING id, last_sequence
        """,
        user_id,
        reference,
    )
    assert row is not None
    return row["id"], row["last_sequence"]


async def _stored_by_client_id(
    connection: Connection, conversation_id: uuid.UUID, messages: list[NewMessage]
) -> dict[uuid.UUID, StoredMessage]:
    client_ids = [m.client_message_id for m in messages if m.client_message_id is not None]
    if not client_ids:
        return {}
    rows = await connection.fetch(
        """
        SELECT id, sequence, created_at, client_message_id FROM messages
        WHERE conversation_id = $1 AND client_message_id = ANY($2::uuid[])
        """,
        conversation_id,
        client_ids,
    )
    return {
        row["client_message_id"]: StoredMessage(
            id=row["id"],
            conversation_id=conversation_id,
            sequence=row["sequence"],
            created_at=row["created_at"],
            client_message_id=row["client_message_id"],
            duplicate=True,
        )
        for row in rows
    }


async def _insert(
    connection: Connection,
    conversation_id: uuid.UUID,
    user_id: uuid.UUID,
    fresh: list[tuple[NewMessage, uuid.UUID, int]],
) -> dict[uuid.UUID, StoredMessage]:
    created_at: datetime = await connection.fetchval(
        """
        INSERT INTO messages (id, conversation_id, user_id, role, content, sequence,
                              client_message_id, metadata)
        SELECT id, $1, $2, role, content, sequence, client_message_id, metadata::jsonb
        FROM unnest($3::uuid[], $4::text[], $5::text[], $6::bigint[], $7::uuid[], $8::text[])
             AS m(id, role, content, sequence, client_message_id, metadata)
        RETURNING created_at
        """,
        conversation_id,
        user_id,
        [row_id for _, row_id, _ in fresh],
        [message.role for message, _, _ in fresh],
        [message.content for message, _, _ in fresh],
        [sequence for _, _, sequence in fresh],
        [message.client_message_id for message, _, _ in fresh],
        [orjson.dumps(dict(message.metadata)).decode() for message, _, _ in fresh],
    )
    calls = [
        (row_id, call, position)
        for message, row_id, _ in fresh
        for position, call in enumerate(message.tool_calls)
    ]
    if calls:
        await connection.execute(
            """
            INSERT INTO tool_calls (message_id, tool_call_id, title, description, response,
                                    error, position)
            SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                                 $6::text[], $7::int[])
            """,
            [row_id for row_id, _, _ in calls],
            [call.tool_call_id for _, call, _ in calls],
            [call.title for _, call, _ in calls],
            [call.description for _, call, _ in calls],
            [call.response for _, call, _ in calls],
            [call.error for _, call, _ in calls],
            [position for _, _, position in calls],
        )
    await connection.execute(
        """
        UPDATE conversations
        SET last_sequence = last_sequence + $2, message_count = message_count + $2,
            last_message_at = now(), updated_at = now()
        WHERE id = $1
        """,
        conversation_id,
        len(fresh),
    )
    return {
        row_id: StoredMessage(
            id=row_id,
            conversation_id=conversation_id,
            sequence=sequence,
            created_at=created_at,
            client_message_id=message.client_message_id,
            duplicate=False,
        )
        for message, row_id, sequence in fresh
    }
