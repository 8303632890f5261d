"""Leases on users against real Redis and PostgreSQL: one holder, epochs, lapses, orphans."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as redis

from exobrain.cluster import Leases
from exobrain.store import migrate


@pytest.fixture
async def stores(
    database_url: str, redis_url: str, namespace: str
) -> AsyncIterator[tuple[redis.Redis, asyncpg.Pool, str]]:
    await migrate(database_url)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    client = redis.Redis.from_url(redis_url)
    yield client, pool, f"test:{namespace}:{secrets.token_hex(4)}:"
    await client.aclose()
    await pool.close()


async def a_user(pool: asyncpg.Pool) -> uuid.UUID:
    user_id: uuid.UUID = await pool.fetchval(
        "INSERT INTO users (email, name) VALUES ($1, 'Leased') RETURNING id",
        f"{uuid.uuid4()}@leases.test",
    )
    return user_id


async def test_one_holder_and_every_take_over_raises_the_epoch(
    stores: tuple[redis.Redis, asyncpg.Pool, str],
) -> None:
    client, pool, prefix = stores
    a = Leases(client, pool, key_prefix=prefix, instance_id="a", ttl=0.3)
    b = Leases(client, pool, key_prefix=prefix, instance_id="b", ttl=0.3)
    user = await a_user(pool)
    first = await a.acquire(user)
    assert first is not None
    assert await b.acquire(user) is None
    assert await b.holder(user) == "a"
    assert await a.renew([user]) == []  # still a's
    assert await b.orphaned() == []
    await asyncio.sleep(0.5)  # a died: nobody renewed
    assert await b.orphaned() == [user]
    taken = await b.acquire(user)
    assert taken == first + 1
    assert await a.renew([user]) == [user]  # a learns it lost the user
    assert await a.orphaned() == []
    await b.release([user])
    assert await b.holder(user) is None
    await asyncio.sleep(0.5)
    assert await a.orphaned() == []  # released users are nobody's orphans


async def test_a_release_by_another_instance_changes_nothing(
    stores: tuple[redis.Redis, asyncpg.Pool, str],
) -> None:
    client, pool, prefix = stores
    a = Leases(client, pool, key_prefix=prefix, instance_id="a", ttl=30)
    b = Leases(client, pool, key_prefix=prefix, instance_id="b", ttl=30)
    user = await a_user(pool)
    epoch = await a.acquire(user)
    await b.release([user])
    assert await a.holder(user) == "a"
    assert await a.acquire(user) == (epoch or 0) + 1  # its own lease: taken again, re-fenced
