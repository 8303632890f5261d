"""Migrations: forward-only, recorded, idempotent and safe when instances race."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable

import asyncpg
import pytest

from exobrain.config import Settings
from exobrain.store import MigrationError, available_migrations, create_pool, migrate


async def recorded_versions(dsn: str) -> list[int]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT version FROM schema_migrations ORDER BY version")
    finally:
        await connection.close()
    return [row["version"] for row in rows]


async def test_applies_every_migration_once_then_nothing(
    database_factory: Callable[[], str],
) -> None:
    dsn = database_factory()
    first = await migrate(dsn)
    assert [migration.version for migration in first] == [m.version for m in available_migrations()]
    assert await migrate(dsn) == []
    assert await recorded_versions(dsn) == [m.version for m in available_migrations()]


async def test_concurrent_migrations_in_one_process_apply_once(
    database_factory: Callable[[], str],
) -> None:
    dsn = database_factory()
    results = await asyncio.gather(*(migrate(dsn) for _ in range(5)))
    assert sorted(len(applied) for applied in results) == [0, 0, 0, 0, len(available_migrations())]


async def test_two_processes_migrating_at_once_both_succeed(
    database_factory: Callable[[], str],
) -> None:
    dsn = database_factory()
    environment = {**os.environ, "ASSISTANT_DB_DSN": dsn, "APP_ENV": "local"}
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "exobrain",
            "migrate",
            env=environment,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = await asyncio.gather(*(process.communicate() for process in processes))
    assert [process.returncode for process in processes] == [0, 0], outputs
    said = sorted(stdout.decode().strip() for stdout, _ in outputs)
    assert said == [f"applied {len(available_migrations())} migration(s)", "schema is up to date"]
    assert await recorded_versions(dsn) == [m.version for m in available_migrations()]


async def test_a_changed_migration_stops_start_up(database_factory: Callable[[], str]) -> None:
    dsn = database_factory()
    await migrate(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1"
        )
    finally:
        await connection.close()
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate(dsn)


async def test_schema_enforces_the_message_invariants(database_factory: Callable[[], str]) -> None:
    dsn = database_factory()
    await migrate(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        user = await connection.fetchval(
            "INSERT INTO users (email, name) VALUES ('a@b.c', 'A') RETURNING id"
        )
        with pytest.raises(asyncpg.UniqueViolationError):
            await connection.execute("INSERT INTO users (email, name) VALUES ('A@B.C', 'A2')")
        conversation = await connection.fetchval(
            "INSERT INTO conversations (user_id, reference) VALUES ($1, '2025/01/14') RETURNING id",
            user,
        )
        with pytest.raises(asyncpg.CheckViolationError):
            await connection.execute(
                "INSERT INTO conversations (user_id, reference) VALUES ($1, '2025-01-14')", user
            )
        insert = (
            "INSERT INTO messages (conversation_id, user_id, role, content, sequence,"
            " client_message_id) VALUES ($1, $2, 'user', 'hi', $3, $4)"
        )
        client_id = "6d9f1b8e-3a7c-4c1e-9d3b-2f4a5b6c7d8e"
        await connection.execute(insert, conversation, user, 1, client_id)
        with pytest.raises(asyncpg.UniqueViolationError, match="sequence"):
            await connection.execute(insert, conversation, user, 1, None)
        with pytest.raises(asyncpg.UniqueViolationError, match="client_message"):
            await connection.execute(insert, conversation, user, 2, client_id)
        matches = await connection.fetchval(
            "SELECT count(*) FROM messages WHERE search_vector @@ to_tsquery('simple', 'hi')"
        )
        assert matches == 1
    finally:
        await connection.close()


async def test_reshape_query_runs_on_every_pooled_connection(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(reshape_schema_query="SET application_name = 'reshaped'")
    pool = await create_pool(settings)
    try:
        connections = [await pool.acquire() for _ in range(3)]
        names = [await connection.fetchval("SHOW application_name") for connection in connections]
        for connection in connections:
            await pool.release(connection)
        async with pool.acquire() as reused:  # a released connection keeps its session settings
            names.append(await reused.fetchval("SHOW application_name"))
            assert await reused.fetchval("SHOW jit") == "off"
    finally:
        await pool.close()
    assert names == ["reshaped"] * 4
