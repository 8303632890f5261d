"""Seed data: the documented users and journals, and running it twice changes nothing."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg

from exobrain.auth import verify_password
from exobrain.store import migrate
from exobrain.store.seed import SEED_JOURNALS, SEED_PASSWORD, seed

COUNTS = """
SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM identities) AS identities,
       (SELECT count(*) FROM conversations) AS conversations,
       (SELECT count(*) FROM messages) AS messages, (SELECT count(*) FROM tool_calls) AS tool_calls
"""


async def counts(connection: asyncpg.Connection) -> dict[str, int]:
    row = await connection.fetchrow(COUNTS)
    assert row is not None
    return dict(row)


async def test_seed_is_idempotent_and_complete(database_factory: Callable[[], str]) -> None:
    dsn = database_factory()
    await migrate(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        await seed(connection)
        first = await counts(connection)
        await seed(connection)
        assert await counts(connection) == first
        assert first == {
            "users": 2,
            "identities": 2,
            "conversations": len(SEED_JOURNALS),
            "messages": sum(len(messages) for messages in SEED_JOURNALS.values()),
            "tool_calls": 1,
        }
        users = await connection.fetch(
            "SELECT u.email, u.name, i.password_hash"
            " FROM users u JOIN identities i ON i.user_id = u.id ORDER BY u.email"
        )
        assert [(row["email"], row["name"]) for row in users] == [
            ("architect@exobrain.local", "Architect User"),
            ("test.user@exobrain.local", "Test User"),
        ]
        for row in users:
            assert row["password_hash"].startswith("scrypt$")
            assert verify_password(SEED_PASSWORD, row["password_hash"])
            assert not verify_password("wrong-password", row["password_hash"])
        journal = await connection.fetch(
            """
            SELECT c.reference, c.message_count, c.last_sequence,
                   array_agg(m.sequence ORDER BY m.sequence) AS seqs
            FROM conversations c
            JOIN users u ON u.id = c.user_id
            JOIN messages m ON m.conversation_id = c.id
            WHERE u.email = 'test.user@exobrain.local' GROUP BY c.id ORDER BY c.reference
            """
        )
        for row in journal:
            count = len(SEED_JOURNALS[row["reference"]])
            assert row["message_count"] == row["last_sequence"] == count
            assert row["seqs"] == list(range(1, count + 1))
    finally:
        await connection.close()
