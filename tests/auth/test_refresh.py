"""Refresh-token rotation in Redis: one winner per token, replay revokes the login."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from exobrain.auth import RefreshTokens


@pytest.fixture
async def refresh_tokens(redis_url: str, namespace: str) -> AsyncIterator[RefreshTokens]:
    client = redis.Redis.from_url(redis_url)
    yield RefreshTokens(client, f"test:{namespace}:{secrets.token_hex(4)}:", ttl_seconds=60)
    await client.aclose()


async def test_of_many_simultaneous_rotations_exactly_one_wins(
    refresh_tokens: RefreshTokens,
) -> None:
    user_id = uuid.uuid4()
    grant = await refresh_tokens.issue(user_id)
    results = await asyncio.gather(*(refresh_tokens.rotate(grant.token) for _ in range(20)))
    winners = [result for result in results if result is not None]
    assert len(winners) == 1
    assert (winners[0].user_id, winners[0].login_id) == (user_id, grant.login_id)
    # The losers replayed a spent token, so the login is gone, winner's token included.
    assert not await refresh_tokens.is_live(grant.login_id)
    assert await refresh_tokens.rotate(winners[0].token) is None


async def test_rotation_chain_keeps_the_login_alive(refresh_tokens: RefreshTokens) -> None:
    grant = await refresh_tokens.issue(uuid.uuid4())
    for _ in range(3):
        successor = await refresh_tokens.rotate(grant.token)
        assert successor is not None
        assert successor.login_id == grant.login_id
        assert successor.token != grant.token
        grant = successor
    assert await refresh_tokens.is_live(grant.login_id)


async def test_revoking_any_token_of_a_login_ends_it(refresh_tokens: RefreshTokens) -> None:
    first = await refresh_tokens.issue(uuid.uuid4())
    second = await refresh_tokens.rotate(first.token)
    assert second is not None
    other = await refresh_tokens.issue(uuid.uuid4())
    await refresh_tokens.revoke(first.token)
    assert not await refresh_tokens.is_live(first.login_id)
    assert await refresh_tokens.rotate(second.token) is None
    assert await refresh_tokens.is_live(other.login_id)
