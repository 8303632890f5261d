"""``migrate`` on the reference service's database: recognised, adopted in place in one
transaction, equivalent afterwards to a database this service made; anything else refused."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import orjson
import pytest
from reference.database import (
    CHECKPOINT_TABLES,
    CONFIG_TABLES,
    REFERENCE_TABLES,
    ReferenceData,
    create_reference_database,
)

from exobrain.store import MigrationError, UnrecognisedSchema, available_migrations, migrate

Connect = Callable[[str], Awaitable[asyncpg.Connection]]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    opened: list[asyncpg.Connection] = []

    async def open_(dsn: str) -> asyncpg.Connection:
        opened.append(await asyncpg.connect(dsn))
        return opened[-1]

    yield open_
    for connection in opened:
        await connection.close()


async def rows(connection: asyncpg.Connection, table: str) -> list[dict[str, Any]]:
    query = f"SELECT * FROM {table} AS t ORDER BY t::text"  # noqa: S608 - the fixture's tables
    return [dict(row) for row in await connection.fetch(query)]


async def test_the_reference_database_is_adopted_with_every_row(
    database_factory: Callable[[], str], connect: Connect
) -> None:
    dsn = database_factory()
    data = await create_reference_database(dsn)
    connection = await connect(dsn)
    before = {
        table: await rows(connection, table) for table in (*REFERENCE_TABLES, *CHECKPOINT_TABLES)
    }
    indexes_before = await index_names(connection)

    applied = await migrate(dsn)

    assert [(m.version, m.name) for m in applied] == [(0, "adopt_reference")] + [
        (m.version, m.name) for m in available_migrations()[1:]
    ]
    recorded = await connection.fetch("SELECT version, name FROM schema_migrations ORDER BY 1")
    assert [row["version"] for row in recorded] == [0, *(m.version for m in available_migrations())]
    assert await migrate(dsn) == []
    for table in CHECKPOINT_TABLES:
        assert await rows(connection, table) == before[table], table
    for table in ("users", "identities"):
        assert await rows(connection, table) == before[table], table
    assert await index_names(connection) >= indexes_before  # nothing of the reference dropped
    await assert_messages_survived(connection, data, before["messages"])
    journals = await connection.fetch(
        "SELECT reference, user_id, last_sequence, message_count, last_message_at, status"
        " FROM conversations ORDER BY reference, user_id"
    )
    assert len(journals) == len(before["conversations"])
    for journal in journals:
        messages = [m for m in data.messages if m.reference == journal["reference"]]
        assert journal["last_sequence"] == journal["message_count"] == len(messages)
        assert journal["last_message_at"] == max(m.created_at for m in messages)
        assert journal["status"] == "active"
    calls = await connection.fetch("SELECT id, position FROM tool_calls ORDER BY position")
    assert [(row["id"], row["position"]) for row in calls] == [
        (data.tool_calls[0], 0),
        (data.tool_calls[1], 1),
    ]
    watermarks = await connection.fetch(
        "SELECT c.reference, w.committed_through FROM knowledge_watermarks w"
        " JOIN conversations c ON c.id = w.conversation_id ORDER BY 1"
    )
    # Each journal's leading run of committed messages; 2025/01/14's fourth, committed out
    # of order, stays flagged above its watermark.
    assert [tuple(row) for row in watermarks] == [("2025/01/14", 2), ("2025/02/17", 2)]


async def assert_messages_survived(
    connection: asyncpg.Connection, data: ReferenceData, before: list[dict[str, Any]]
) -> None:
    after = {row["id"]: dict(row) for row in await connection.fetch("SELECT * FROM messages")}
    assert after.keys() == {row["id"] for row in before}
    for row in before:
        kept = after[row["id"]]
        for column in ("conversation_id", "role", "content", "client_message_id", "created_at"):
            assert kept[column] == row[column], column
        assert kept["committed_to_knowledge_base"] == row["committed_to_knowledge_base"]
        assert orjson.loads(kept["metadata"]) == {}
    owners = {user.id for user in data.users}
    for reference in {m.reference for m in data.messages}:
        journal = [m for m in data.messages if m.reference == reference]
        assert [after[m.id]["sequence"] for m in journal] == list(range(1, len(journal) + 1))
        assert {after[m.id]["user_id"] for m in journal} == {journal[0].user.id} <= owners


async def index_names(connection: asyncpg.Connection) -> set[str]:
    names = await connection.fetch("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")
    return {row["indexname"] for row in names}


async def test_the_reference_reads_every_journal_through_its_views_afterwards(
    database_factory: Callable[[], str], connect: Connect
) -> None:
    dsn = database_factory()
    data = await create_reference_database(dsn)
    connection = await connect(dsn)
    views_before = await views(connection, data.views)
    await migrate(dsn)
    views_after = await views(connection, data.views)
    assert views_after == views_before  # set aside to widen sequence, then made again
    assert {name for name, *_ in views_after} == set(REFERENCE_TABLES)
    ada = data.users[0]
    batch = [{"u": str(ada.id), "r": data.today, "role": "user", "content": "After the cutover"}]
    appended = await connection.fetchrow(
        "SELECT * FROM journal_append($1::jsonb)", orjson.dumps(batch).decode()
    )
    assert appended is not None
    assert appended["sequence"] == len(data.journal(ada, data.today)) + 1

    await connection.execute(f"SET search_path TO {data.views}")
    seen = await connection.fetch(
        """
        SELECT m.id, m.role, m.content, m.sequence, m.created_at, m.metadata, c.reference
        FROM messages m JOIN conversations c ON c.id = m.conversation_id
        ORDER BY c.reference, m.sequence
        """
    )
    assert {row["id"] for row in seen} == {m.id for m in data.messages} | {appended["id"]}
    assert await connection.fetchval("SELECT count(*) FROM tool_calls") == 2
    assert (
        await connection.fetchval("SELECT value ->> 'state' FROM reshape.data WHERE key = 'state'")
        == "idle"
    )


async def views(connection: asyncpg.Connection, schema: str) -> list[tuple[Any, ...]]:
    """Each view of ``schema``: name, definition, owner, grants."""
    found = await connection.fetch(
        "SELECT relname, pg_get_viewdef(oid), relowner, relacl::text[] FROM pg_class"
        " WHERE relnamespace = $1::regnamespace AND relkind = 'v' ORDER BY relname",
        schema,
    )
    return [tuple(row) for row in found]


async def test_an_adopted_database_is_equivalent_to_a_new_one(
    database_factory: Callable[[], str], connect: Connect
) -> None:
    fresh, adopted = database_factory(), database_factory()
    await migrate(fresh)
    await create_reference_database(adopted, configs=True)
    await migrate(adopted)
    ours, theirs = await catalog(await connect(fresh)), await catalog(await connect(adopted))
    tables = {table for table, _ in ours["column"]} | {""}  # functions belong to no table
    theirs = {
        kind: {k: v for k, v in items.items() if k[0] in tables} for kind, items in theirs.items()
    }
    assert theirs["column"].pop(("messages", "content_json")) == "jsonb"  # the reference's
    assert theirs["column"] == ours["column"]
    assert theirs["constraint"] == ours["constraint"]
    assert theirs["function"] == ours["function"]
    missing = set(ours["index"].values()) - set(theirs["index"].values())
    assert not missing  # the reference's own indexes stay beside them


async def catalog(connection: asyncpg.Connection) -> dict[str, dict[tuple[str, str], str]]:
    """Columns, constraints (but unique ones: see indexes), indexes (named apart) and
    functions of the public schema, each by (table, name)."""
    found: dict[str, dict[tuple[str, str], str]] = {
        kind: {} for kind in ("column", "constraint", "index", "function")
    }
    for kind, table, name, text in await connection.fetch(
        """
        SELECT 'column', c.relname, a.attname,
               concat_ws(' ', format_type(a.atttypid, a.atttypmod),
                         CASE WHEN a.attnotnull THEN 'not null' END,
                         CASE WHEN a.attgenerated = 's' THEN 'generated' END,
                         'default ' || pg_get_expr(d.adbin, d.adrelid))
        FROM pg_class c
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
        UNION ALL
        SELECT 'constraint', c.relname, x.conname, pg_get_constraintdef(x.oid)
        FROM pg_constraint x JOIN pg_class c ON c.oid = x.conrelid
        WHERE c.relnamespace = 'public'::regnamespace AND x.contype <> 'u'
        UNION ALL
        SELECT 'index', tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
        UNION ALL
        SELECT 'function', '', p.proname, pg_get_functiondef(p.oid)
        FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
        """
    ):
        found[kind][(table, name)] = re.sub(r"INDEX \S+ ON", "INDEX ON", text)
    return found


@pytest.mark.parametrize(
    ("configs", "change", "named"),
    [
        (
            False,
            "ALTER TABLE messages DROP COLUMN committed_to_knowledge_base CASCADE",
            "messages.committed_to_knowledge_base (boolean) is missing",
        ),
        (False, "DROP TABLE tool_calls CASCADE", "table tool_calls is missing"),
        (
            False,
            "ALTER TABLE users ADD COLUMN nickname text",
            "users.nickname is not the reference's",
        ),
        (
            False,
            "DROP SCHEMA migration_006_message_knowledge_commit_tracking CASCADE;"
            " ALTER TABLE messages ALTER COLUMN sequence TYPE bigint",
            "messages.sequence is bigint, not integer",
        ),
        (
            False,
            "CREATE TABLE knowledge_watermarks (conversation_id uuid PRIMARY KEY)",
            "table knowledge_watermarks is not the reference's",
        ),
        (
            False,
            """UPDATE reshape.data SET value = '{"state": "in_progress", "migrations": []}'"""
            " WHERE key = 'state'",
            "a Reshape migration is in progress",
        ),
        (
            True,
            "ALTER TABLE user_config_definitions DROP COLUMN name CASCADE",
            "user_config_definitions.name (text) is missing",
        ),
        (True, "DROP TABLE user_config_values CASCADE", "table user_config_values is missing"),
    ],
)
async def test_anything_but_the_reference_is_refused_and_left_as_it_was(
    database_factory: Callable[[], str], connect: Connect, configs: bool, change: str, named: str
) -> None:
    dsn = database_factory()
    await create_reference_database(dsn, configs=configs)
    connection = await connect(dsn)
    await connection.execute(change)
    with pytest.raises(UnrecognisedSchema) as refused:
        await migrate(dsn)
    assert named in str(refused.value)
    assert "nothing was changed" in str(refused.value)
    assert await untouched(connection)


async def untouched(connection: asyncpg.Connection) -> bool:
    """No bookkeeping table, no counter column, no index of this service."""
    return not await connection.fetchval(
        """
        SELECT to_regclass('schema_migrations') IS NOT NULL
            OR to_regclass('users_email_key') IS NOT NULL
            OR EXISTS (SELECT 1 FROM information_schema.columns
                       WHERE table_name = 'conversations' AND column_name = 'last_sequence')
        """
    )


async def test_this_services_own_tables_without_their_history_are_refused(
    database_factory: Callable[[], str], connect: Connect
) -> None:
    dsn = database_factory()
    await migrate(dsn)
    await (await connect(dsn)).execute("DROP TABLE schema_migrations")
    with pytest.raises(UnrecognisedSchema, match="table chat_owners is not the reference's"):
        await migrate(dsn)


@pytest.mark.parametrize(
    ("breach", "named"),
    [
        (
            "INSERT INTO conversations (user_id, reference)"
            " SELECT id, '2025-01-20' FROM users WHERE email = 'ada@reference.test'",
            "conversations_reference_check",
        ),
        (
            "INSERT INTO users (name, email) VALUES ('Ada again', 'ADA@reference.test')",
            "Key (lower(email))=(ada@reference.test) is duplicated",
        ),
    ],
)
async def test_a_failing_adoption_leaves_the_reference_database_as_it_was(
    database_factory: Callable[[], str], connect: Connect, breach: str, named: str
) -> None:
    dsn = database_factory()
    await create_reference_database(dsn)
    connection = await connect(dsn)
    await connection.execute(breach)
    before = await rows(connection, "messages")
    with pytest.raises(MigrationError, match=re.escape(named)) as failed:
        await migrate(dsn)
    assert "nothing was changed" in str(failed.value)
    assert await untouched(connection)
    assert await rows(connection, "messages") == before  # not renumbered either
    assert await connection.fetchval("SELECT to_regclass('knowledge_dispatches')") is None


async def test_adopted_user_configs_keep_the_references_definitions_and_choices(
    database_factory: Callable[[], str], connect: Connect
) -> None:
    dsn = database_factory()
    data = await create_reference_database(dsn, configs=True)
    connection = await connect(dsn)
    before = {table: await rows(connection, table) for table in CONFIG_TABLES}
    applied = await migrate(dsn)
    assert applied[0].name == "adopt_reference_configs"
    for table in CONFIG_TABLES:
        assert await rows(connection, table) == before[table], table
    await connection.execute("DELETE FROM users WHERE id = $1", data.users[0].id)  # cascades
    assert await connection.fetchval("SELECT count(*) FROM user_config_values") == 0
    assert await connection.fetchval("SELECT count(*) FROM messages") == len(
        [m for m in data.messages if m.user != data.users[0]]
    )


async def test_a_database_with_only_unrelated_tables_is_a_new_install(
    database_factory: Callable[[], str], connect: Connect
) -> None:
    dsn = database_factory()
    await (await connect(dsn)).execute("CREATE TABLE checkpoints (thread_id text PRIMARY KEY)")
    applied = await migrate(dsn)
    assert [m.version for m in applied] == [m.version for m in available_migrations()]


async def test_the_migrate_command_says_what_it_refused_then_adopts(
    database_factory: Callable[[], str], connect: Connect
) -> None:
    dsn = database_factory()
    await create_reference_database(dsn)
    reshape = await connect(dsn)
    await reshape.execute(
        """UPDATE reshape.data SET value = '{"state": "completing"}' WHERE key = 'state'"""
    )
    code, out, err = await exobrain_migrate(dsn)
    assert code == 1
    assert "migrate failed: found tables conversations, identities, messages" in err
    assert "a Reshape migration is completing: complete or abort it first" in err
    await reshape.execute("""UPDATE reshape.data SET value = '{"state": "idle"}'""")
    code, out, err = await exobrain_migrate(dsn)
    assert (code, out.strip()) == (0, f"applied {len(available_migrations())} migration(s)"), err


async def exobrain_migrate(dsn: str) -> tuple[int | None, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "exobrain",
        "migrate",
        env={**os.environ, "ASSISTANT_DB_DSN": dsn, "APP_ENV": "local"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode, out.decode(), err.decode()
