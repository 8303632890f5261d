"""Bearer tokens: expiry, rotation with theft detection, forgeries, immediate revocation."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable
from typing import Any

import jwt
import orjson
import pytest
import redis.asyncio as redis
from auth_support import (
    LOGIN,
    LOGOUT,
    ME,
    AiohttpClient,
    create_account,
    delete_account,
    login_tokens,
    me_with,
    refresh,
    start,
)

from exobrain.config import Settings
from exobrain.http.resources import REDIS, SETTINGS

SECRET = "k" * 64  # long enough for HS512 too, so forging with it warns about nothing


async def test_access_token_expires(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings, auth_access_token_ttl_seconds=1)
    account = await create_account(client)
    tokens = await login_tokens(client, account)
    assert tokens["expires_in"] == 1
    assert (await me_with(client, tokens["access_token"])).status == 200

    await asyncio.sleep(2)  # exp is rounded up to a whole second: 2 s outlives any 1 s token
    expired = await me_with(client, tokens["access_token"])
    assert expired.status == 401
    assert await expired.json() == {"detail": "authentication required"}
    assert expired.headers["WWW-Authenticate"] == "Bearer"

    renewed = await refresh(client, tokens["refresh_token"])  # the login outlives its tokens
    assert renewed.status == 200
    assert (await me_with(client, (await renewed.json())["access_token"])).status == 200


async def test_refresh_rotates_and_a_replayed_token_revokes_the_whole_login(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings)
    account = await create_account(client)
    first = await login_tokens(client, account)

    rotated = await refresh(client, first["refresh_token"])
    assert rotated.status == 200
    second = await rotated.json()
    assert set(second) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert second["refresh_token"] != first["refresh_token"]
    assert (await me_with(client, second["access_token"])).status == 200

    replayed = await refresh(client, first["refresh_token"])
    assert replayed.status == 401
    assert await replayed.json() == {"detail": "invalid refresh token"}
    # Someone else held the old token: nothing of this login survives, not even the newest.
    assert (await refresh(client, second["refresh_token"])).status == 401
    assert (await me_with(client, second["access_token"])).status == 401
    assert (await me_with(client, first["access_token"])).status == 401

    other_login = await login_tokens(client, account)  # other logins are untouched
    assert (await me_with(client, other_login["access_token"])).status == 200


async def test_concurrent_refreshes_of_one_token_give_exactly_one_success(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings)
    account = await create_account(client)
    for _ in range(5):
        token = (await login_tokens(client, account))["refresh_token"]
        responses = await asyncio.gather(*(refresh(client, token) for _ in range(2)))
        assert sorted(response.status for response in responses) == [200, 401]


async def test_unknown_refresh_token_is_401(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings)
    response = await refresh(client, "never-issued")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_bearer_logout_revokes_the_refresh_token_and_its_login(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings)
    account = await create_account(client)
    tokens = await login_tokens(client, account)
    response = await client.post(LOGOUT, json={"refresh_token": tokens["refresh_token"]})
    assert response.status == 204
    assert (await refresh(client, tokens["refresh_token"])).status == 401
    assert (await me_with(client, tokens["access_token"])).status == 401


async def test_concurrent_requests_share_lookups_yet_see_revocation_and_deletion_at_once(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings)
    account = await create_account(client)
    revoked, kept = await login_tokens(client, account), await login_tokens(client, account)

    async def statuses(access_token: str) -> set[int]:
        responses = await asyncio.gather(*(me_with(client, access_token) for _ in range(20)))
        return {response.status for response in responses}

    assert await statuses(revoked["access_token"]) == {200}
    await client.post(LOGOUT, json={"refresh_token": revoked["refresh_token"]})
    assert await statuses(revoked["access_token"]) == {401}
    assert await statuses(kept["access_token"]) == {200}
    await delete_account(client, account)
    assert await statuses(kept["access_token"]) == {401}


def forgeries(token: str, other_user: str) -> dict[str, str]:
    """Variations of a valid HS256 token, each of which must be refused."""
    claims = jwt.decode(token, options={"verify_signature": False})
    now = int(time.time())
    without_sid = {name: value for name, value in claims.items() if name != "sid"}
    return {
        "wrong secret": jwt.encode(claims, "z" * 64, algorithm="HS256"),
        "expired": jwt.encode({**claims, "iat": now - 60, "exp": now - 30}, SECRET, "HS256"),
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "HS512 with the right secret": jwt.encode(claims, SECRET, algorithm="HS512"),
        "no sid": jwt.encode(without_sid, SECRET, algorithm="HS256"),
        "sub swapped, signature kept": swap_payload(token, {**claims, "sub": other_user}),
        "not a JWT": "garbage",
    }


def swap_payload(token: str, claims: dict[str, Any]) -> str:
    header, _, signature = token.split(".")
    payload = base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b"=")
    return f"{header}.{payload.decode()}.{signature}"


async def test_forged_expired_and_wrong_algorithm_tokens_are_refused(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings, auth_jwt_secret=SECRET)
    account, other = await create_account(client), await create_account(client)
    token = (await login_tokens(client, account))["access_token"]
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    resigned = jwt.encode(claims, SECRET, algorithm="HS256")
    assert (await me_with(client, resigned)).status == 200  # the control: the claims are fine

    for name, forged in forgeries(token, str(other.user_id)).items():
        response = await me_with(client, forged)
        assert response.status == 401, name
        assert await response.json() == {"detail": "authentication required"}, name


async def test_deleted_user_is_refused_at_once(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings)
    account = await create_account(client)
    tokens = await login_tokens(client, account)
    assert (await client.post(LOGIN, json=account.credentials())).status == 200  # cookie too
    assert (await me_with(client, tokens["access_token"])).status == 200

    await delete_account(client, account)
    assert (await me_with(client, tokens["access_token"])).status == 401
    assert (await client.get(ME)).status == 401
    assert (await refresh(client, tokens["refresh_token"])).status == 401


async def test_a_token_only_ever_yields_its_own_user(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings)
    alice = await create_account(client, name="Alice")
    bob = await create_account(client, name="Bob")
    alice_tokens, bob_tokens = await login_tokens(client, alice), await login_tokens(client, bob)
    assert (await client.post(LOGIN, json=alice.credentials())).status == 200  # Alice's cookie

    bob_me = await me_with(client, bob_tokens["access_token"])  # Bearer wins over the cookie
    assert await bob_me.json() == {"name": "Bob", "email": bob.email}
    assert await (await client.get(ME)).json() == {"name": "Alice", "email": alice.email}
    renewed = await (await refresh(client, bob_tokens["refresh_token"])).json()
    assert await (await me_with(client, renewed["access_token"])).json() == {
        "name": "Bob",
        "email": bob.email,
    }
    alice_me = await me_with(client, alice_tokens["access_token"])
    assert (await alice_me.json())["email"] == alice.email


@pytest.mark.parametrize("mode", ["tokens", "session"])
async def test_redis_holds_no_usable_secret(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], mode: str
) -> None:
    client = await start(aiohttp_client, make_settings)
    account = await create_account(client)
    response = await client.post(LOGIN, json=account.credentials(issuance_policy=mode))
    if mode == "tokens":
        secret = (await response.json())["refresh_token"]
    else:
        secret = response.cookies["exobrain_session"].value
    store: redis.Redis = client.app[REDIS]
    keys = [key async for key in store.scan_iter(f"{client.app[SETTINGS].redis_key_prefix}*")]
    assert keys
    for key in keys:
        kind = await store.type(key)
        value = await (store.hgetall(key) if kind == b"hash" else store.get(key))
        assert secret.encode() not in key + repr(value).encode()
