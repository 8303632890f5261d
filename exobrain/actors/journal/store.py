"""One transaction per batch of appends: the JournalActor's only SQL.

A batch costs the same few statements however many journals it touches:
lock (or create) every conversation row at once, look up already stored
client_message_ids, insert all messages and tool calls, advance the counters.
The conversation row lock is the arbiter of both the sequence counter and
idempotency, across processes too: whoever holds it sees every committed
client_message_id and the current ``last_sequence``. Rows are locked in
(user, reference) order, so concurrent writers cannot deadlock.

If the database refuses the batch's data (a journal whose user was deleted,
say), the batch is written again journal by journal, each in a savepoint, so
only the offending journal's commands fail.
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
Journal = tuple[uuid.UUID, str]

#: Errors that condemn one journal's writes; anything else fails the whole batch.
_JOURNAL_ERRORS = (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError)


async def write_batch(pool: asyncpg.Pool, commands: Sequence[AppendMessages]) -> list[Outcome]:
    async with pool.acquire() as connection:
        try:
            async with connection.transaction():
                return list(await _write(connection, commands))
        except _JOURNAL_ERRORS:
            return await _write_journal_by_journal(connection, commands)


async def _write_journal_by_journal(
    connection: Connection, commands: Sequence[AppendMessages]
) -> list[Outcome]:
    journals: dict[Journal, list[int]] = defaultdict(list)
    for index, command in enumerate(commands):
        journals[(command.user_id, command.reference)].append(index)
    outcomes: list[Outcome] = [ValueError("not written")] * len(commands)
    async with connection.transaction():
        for _, indexes in sorted(journals.items(), key=lambda item: _lock_key(item[0])):
            batch = [commands[index] for index in indexes]
            written: Sequence[Outcome]
            try:
                async with connection.transaction():  # a savepoint
                    written = await _write(connection, batch)
            except _JOURNAL_ERRORS as exc:
                written = [exc] * len(batch)
            for index, outcome in zip(indexes, written, strict=True):
                outcomes[index] = outcome
    return outcomes


def _lock_key(journal: Journal) -> tuple[str, str]:
    return str(journal[0]), journal[1]


async def _write(
    connection: Connection, commands: Sequence[AppendMessages]
) -> list[tuple[StoredMessage, ...]]:
    conversations = await _lock_conversations(
        connection, {(c.user_id, c.reference) for c in commands}
    )
    known = await _stored_by_client_id(connection, conversations, commands)

    fresh: list[tuple[NewMessage, uuid.UUID, uuid.UUID, uuid.UUID, int]] = []
    claimed: dict[tuple[uuid.UUID, uuid.UUID], uuid.UUID] = {}  # inserted by this batch
    planned: list[StoredMessage | tuple[uuid.UUID, bool]] = []  # (row to insert, is a repeat)
    for command in commands:
        journal = (command.user_id, command.reference)
        conversation_id = conversations[journal][0]
        for message in command.messages:
            client_id = message.client_message_id
            key = None if client_id is None else (conversation_id, client_id)
            if key is not None and key in known:
                planned.append(known[key])
            elif key is not None and key in claimed:
                planned.append((claimed[key], True))
            else:
                sequence = conversations[journal][1] + 1
                conversations[journal] = (conversation_id, sequence)
                row_id = uuid.uuid4()
                fresh.append((message, row_id, conversation_id, command.user_id, sequence))
                planned.append((row_id, False))
                if key is not None:
                    claimed[key] = row_id

    inserted = await _insert(connection, fresh) if fresh else {}
    stored = [
        step
        if isinstance(step, StoredMessage)
        else dataclasses.replace(inserted[step[0]], duplicate=step[1])
        for step in planned
    ]
    replies = []
    position = 0
    for command in commands:
        replies.append(tuple(stored[position : position + len(command.messages)]))
        position += len(command.messages)
    return replies


async def _lock_conversations(
    connection: Connection, journals: set[Journal]
) -> dict[Journal, tuple[uuid.UUID, int]]:
    """Create missing conversations and lock them all; their ids and current last_sequence."""
    ordered = sorted(journals, key=_lock_key)
    rows = await connection.fetch(
        """
        INSERT INTO conversations (user_id, reference)
        SELECT user_id, reference FROM unnest($1::uuid[], $2::text[]) AS j(user_id, reference)
        ORDER BY user_id::text, reference
        ON CONFLICT (user_id, reference) DO UPDATE SET updated_at = now()
        RETURNING id, user_id, reference, last_sequence
        """,
        [user_id for user_id, _ in ordered],
        [reference for _, reference in ordered],
    )
    return {(row["user_id"], row["reference"]): (row["id"], row["last_sequence"]) for row in rows}


async def _stored_by_client_id(
    connection: Connection,
    conversations: dict[Journal, tuple[uuid.UUID, int]],
    commands: Sequence[AppendMessages],
) -> dict[tuple[uuid.UUID, uuid.UUID], StoredMessage]:
    wanted = [
        (conversations[(command.user_id, command.reference)][0], message.client_message_id)
        for command in commands
        for message in command.messages
        if message.client_message_id is not None
    ]
    if not wanted:
        return {}
    rows = await connection.fetch(
        """
        SELECT m.id, m.conversation_id, m.sequence, m.created_at, m.client_message_id
        FROM unnest($1::uuid[], $2::uuid[]) AS w(conversation_id, client_message_id)
        JOIN messages m USING (conversation_id, client_message_id)
        """,
        [conversation_id for conversation_id, _ in wanted],
        [client_id for _, client_id in wanted],
    )
    return {
        (row["conversation_id"], row["client_message_id"]): StoredMessage(
            id=row["id"],
            conversation_id=row["conversation_id"],
            sequence=row["sequence"],
            created_at=row["created_at"],
            client_message_id=row["client_message_id"],
            duplicate=True,
        )
        for row in rows
    }


async def _insert(
    connection: Connection, fresh: list[tuple[NewMessage, uuid.UUID, uuid.UUID, uuid.UUID, int]]
) -> dict[uuid.UUID, StoredMessage]:
    created_at: datetime = await connection.fetchval(
        """
        INSERT INTO messages (id, conversation_id, user_id, role, content, sequence,
                              client_message_id, metadata)
        SELECT id, conversation_id, user_id, role, content, sequence, client_message_id,
               metadata::jsonb
        FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::bigint[],
                    $7::uuid[], $8::text[])
             AS m(id, conversation_id, user_id, role, content, sequence, client_message_id,
                  metadata)
        RETURNING created_at
        """,
        [row_id for _, row_id, _, _, _ in fresh],
        [conversation_id for _, _, conversation_id, _, _ in fresh],
        [user_id for _, _, _, user_id, _ in fresh],
        [message.role for message, *_ in fresh],
        [message.content for message, *_ in fresh],
        [sequence for *_, sequence in fresh],
        [message.client_message_id for message, *_ in fresh],
        [orjson.dumps(dict(message.metadata)).decode() for message, *_ in fresh],
    )
    calls = [
        (row_id, call, position)
        for message, row_id, *_ in fresh
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
    counts: dict[uuid.UUID, int] = defaultdict(int)
    for _, _, conversation_id, _, _ in fresh:
        counts[conversation_id] += 1
    await connection.execute(
        """
        UPDATE conversations AS c
        SET last_sequence = c.last_sequence + d.added, message_count = c.message_count + d.added,
            last_message_at = now(), updated_at = now()
        FROM unnest($1::uuid[], $2::int[]) AS d(id, added)
        WHERE c.id = d.id
        """,
        list(counts),
        list(counts.values()),
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
        for message, row_id, conversation_id, _, sequence in fresh
    }
