"""Leases on users against real Redis and PostgreSQL: one holder, epochs, lapses, orphans."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as redis

from exobrain.cluster import Leases, Ownership
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
    assert not first.inherited
    assert await b.acquire(user) is None
    assert await b.holder(user) == "a"
    assert await a.renew([user]) == []  # still a's
    assert await b.orphaned() == []
    await asyncio.sleep(0.5)  # a died: nobody renewed
    assert await b.orphaned() == [user]
    taken = await b.acquire(user)
    assert taken is not None
    assert taken.epoch == first.epoch + 1
    assert taken.inherited  # a did not release it: it may have left turns unfinished
    assert await a.renew([user]) == [user]  # a learns it lost the user
    assert await a.orphaned() == []
    await b.release([user])
    assert await b.holder(user) is None
    await asyncio.sleep(0.5)
    assert await a.orphaned() == []  # released users are nobody's orphans
    again = await a.acquire(user)
    assert again is not None
    assert not again.inherited
    await a.release([user], hand_off=True)  # shutting down, with turns left waiting
    assert await b.orphaned() == [user]  # at once, not after the TTL
    handed = await b.acquire(user)
    assert handed is not None
    assert handed.inherited


async def test_a_release_by_another_instance_changes_nothing(
    stores: tuple[redis.Redis, asyncpg.Pool, str],
) -> None:
    client, pool, prefix = stores
    a = Leases(client, pool, key_prefix=prefix, instance_id="a", ttl=30)
    b = Leases(client, pool, key_prefix=prefix, instance_id="b", ttl=30)
    user = await a_user(pool)
    first = await a.acquire(user)
    assert first is not None
    await b.release([user])
    assert await a.holder(user) == "a"
    again = await a.acquire(user)  # its own lease: taken again, re-fenced
    assert again is not None
    assert again.epoch == first.epoch + 1


async def test_the_heartbeat_ends_at_shutdown_even_when_its_cancellation_is_lost(
    stores: tuple[redis.Redis, asyncpg.Pool, str],
) -> None:
    client, pool, prefix = stores
    leases = Leases(client, pool, key_prefix=prefix, instance_id="a", ttl=0.3)
    ownership = Ownership(
        leases, adopt=lambda user, epoch: asyncio.sleep(0), drop=lambda user: None
    )
    beating = asyncio.Event()

    async def swallowing_beat() -> None:  # what a library below once did to a cancellation
        beating.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(10)

    ownership._beat = swallowing_beat  # type: ignore[method-assign]
    heartbeat = asyncio.create_task(ownership.run())
    await asyncio.wait_for(beating.wait(), 5)
    ownership.closing = True
    heartbeat.cancel()
    await asyncio.wait_for(heartbeat, 5)  # the next beat is not waited for
