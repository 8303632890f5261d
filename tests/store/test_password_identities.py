"""Password identities: the reference's ``local`` ones and this service's older ``password``
ones log in alike, by the user's email in any case; new ones are written as ``local``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from exobrain.store import migrate
from exobrain.store.users import ensure_password_user, find_password_identity


@pytest.fixture
async def pool(database_factory: Callable[[], str]) -> AsyncIterator[asyncpg.Pool]:
    dsn = database_factory()
    await migrate(dsn)
    created = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    assert created is not None
    yield created
    await created.close()


async def add_user(pool: asyncpg.Pool, email: str, provider: str, subject: str) -> None:
    await pool.execute(
        """
        WITH u AS (INSERT INTO users (email, name) VALUES ($1, 'Someone') RETURNING id)
        INSERT INTO identities (user_id, provider, provider_subject, password_hash)
        SELECT id, $2, $3, 'scrypt$hash$' || $2 FROM u
        """,
        email,
        provider,
        subject,
    )


async def test_both_providers_log_in_by_email_in_any_case(pool: asyncpg.Pool) -> None:
    await add_user(pool, "Grace.Hopper@Reference.test", "local", "Grace.Hopper@Reference.test")
    await add_user(pool, "Ada@Example.test", "password", "ada@example.test")
    await add_user(pool, "oauth@example.test", "github", "oauth@example.test")
    grace = await find_password_identity(pool, "grace.hopper@reference.TEST")
    ada = await find_password_identity(pool, "ADA@example.test")
    assert grace is not None
    assert (grace.user.email, grace.password_hash) == (
        "Grace.Hopper@Reference.test",
        "scrypt$hash$local",
    )
    assert ada is not None
    assert ada.password_hash == "scrypt$hash$password"
    assert await find_password_identity(pool, "oauth@example.test") is None
    assert await find_password_identity(pool, "nobody@example.test") is None


async def test_new_identities_are_local_and_never_a_second_one(pool: asyncpg.Pool) -> None:
    await add_user(pool, "Ada@Example.test", "password", "ada@example.test")
    async with pool.acquire() as connection:
        ada = await ensure_password_user(connection, "ada@example.test", "Ada", "scrypt$new$hash")
        grace = await ensure_password_user(connection, "Grace@Example.test", "Grace", "scrypt$g$h")
    identities = await pool.fetch(
        "SELECT user_id, provider, provider_subject, password_hash FROM identities ORDER BY 3"
    )
    assert [tuple(row) for row in identities] == [
        (ada, "password", "ada@example.test", "scrypt$hash$password"),
        (grace, "local", "grace@example.test", "scrypt$g$h"),
    ]
