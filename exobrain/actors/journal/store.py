"""One statement per batch of appends: the JournalActor's only SQL.

``journal_append`` (migration 0005) does the whole batch in one round trip:
it locks (or creates) every conversation row of the batch, in (user,
reference) order so concurrent writers cannot deadlock, then, with a snapshot
taken after the locks, skips client_message_ids already stored, inserts the
messages and tool calls and advances the counters. The conversation row lock
is the arbiter of both the sequence counter and idempotency, across processes
too.

If the database refuses the batch's data (a journal whose user was deleted,
say, a value it cannot hold, or a write whose ownership epoch is stale: ``journal_append_fenced``,
migration 0006), the batch is written again journal by journal, each in a
savepoint, so only the offending journal's commands fail.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from exobrain.store.pool import Connection

from .messages import AppendMessages, Fenced, NewMessage, StoredMessage

#: What a batch returns per command: its stored messages, or why its journal was refused.
Outcome = tuple[StoredMessage, ...] | Exception
Journal = tuple[uuid.UUID, str]

#: Errors that condemn one journal's writes, whenever they are tried again (its data, not
#: the database's state); anything else fails the whole batch.
JOURNAL_ERRORS = (
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.DataError,
    asyncpg.ProgramLimitExceededError,
    orjson.JSONEncodeError,  # text no JSON can carry (a lone surrogate)
)


async def write_batch(pool: asyncpg.Pool, commands: Sequence[AppendMessages]) -> list[Outcome]:
    async with pool.acquire() as connection:
        try:
            return list(await _write(connection, commands))
        except JOURNAL_ERRORS:
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
            except JOURNAL_ERRORS as exc:
                written = [_refusal(exc)] * len(batch)
            for index, outcome in zip(indexes, written, strict=True):
                outcomes[index] = outcome
    return outcomes


def _refusal(exc: Exception) -> Exception:
    if isinstance(exc, asyncpg.CheckViolationError) and exc.constraint_name == "chat_owner_epoch":
        return Fenced(str(exc))
    return exc


def _lock_key(journal: Journal) -> tuple[str, str]:
    return str(journal[0]), journal[1]


async def _write(
    connection: Connection, commands: Sequence[AppendMessages]
) -> list[tuple[StoredMessage, ...]]:
    items = [_item(command, message) for command in commands for message in command.messages]
    rows = await connection.fetch("SELECT * FROM journal_append_fenced($1::jsonb)", items)
    stored = [
        StoredMessage(
            id=row[1],
            conversation_id=row[2],
            sequence=row[3],
            created_at=row[4],
            client_message_id=row[5],
            duplicate=row[6],
        )
        for row in rows
    ]
    replies, position = [], 0
    for command in commands:
        replies.append(tuple(stored[position : position + len(command.messages)]))
        position += len(command.messages)
    return replies


def _item(command: AppendMessages, message: NewMessage) -> dict[str, Any]:
    """One message as ``journal_append`` reads it (ids as text: asyncpg's UUIDs are not
    the ``uuid.UUID`` the JSON encoder knows)."""
    client_id = message.client_message_id
    item: dict[str, Any] = {
        "u": str(command.user_id),
        "r": command.reference,
        "role": message.role,
        "content": message.content,
        "cid": None if client_id is None else str(client_id),
        "meta": dict(message.metadata),
    }
    if command.epoch is not None:
        item["f"] = command.epoch
    if message.tool_calls:
        item["calls"] = [
            {
                "tool_call_id": call.tool_call_id,
                "title": call.title,
                "description": call.description,
                "response": call.response,
                "error": call.error,
            }
            for call in message.tool_calls
        ]
    return item
