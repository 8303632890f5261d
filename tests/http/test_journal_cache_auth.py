"""Cached journal pages check the caller in the cache's own script: still at once, still theirs.

A hit is one Redis round trip that reads the login (or session) and the page's
generation together; these tests hold it to what :func:`authenticate` promises.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import jwt
from auth_support import (
    LOGIN,
    LOGOUT,
    AiohttpClient,
    Client,
    auth_settings,
    create_account,
    delete_account,
    login_tokens,
)
from journal_support import REFERENCE, Reader

from exobrain.actors.journal import AppendMessages, NewMessage, append
from exobrain.config import Settings
from exobrain.http import create_app
from exobrain.http.actors import JOURNAL
from exobrain.http.resources import REDIS, SETTINGS

MESSAGES = f"/api/journal/{REFERENCE}/messages"


async def write(client: Client, user_id: uuid.UUID, content: str) -> None:
    command = AppendMessages(user_id, REFERENCE, (NewMessage("user", content),))
    await append(client.app[JOURNAL], command, timeout=10)


async def read(client: Client, headers: dict[str, str]) -> tuple[int, str, list[str]]:
    """(status, X-Cache, contents) of a GET of the messages page."""
    response = await client.get(MESSAGES, headers=headers)
    if response.status != 200:
        return response.status, "", []
    seen = [message["content"] for message in await response.json()]
    return response.status, response.headers["X-Cache"], seen


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_revoked_login_is_refused_at_once_even_on_a_hit(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await aiohttp_client(create_app(auth_settings(make_settings)))
    account = await create_account(client)
    revoked, kept = await login_tokens(client, account), await login_tokens(client, account)
    await write(client, account.user_id, "one")
    assert await read(client, bearer(revoked["access_token"])) == (200, "miss", ["one"])
    assert await read(client, bearer(kept["access_token"])) == (200, "hit", ["one"])

    response = await client.post(LOGOUT, json={"refresh_token": revoked["refresh_token"]})
    assert response.status == 204
    reads = await asyncio.gather(
        *(read(client, bearer(token["access_token"])) for token in [revoked, kept] * 10)
    )
    assert reads == [(401, "", []), (200, "hit", ["one"])] * 10


async def test_a_session_reads_its_own_users_pages_and_ends_at_logout(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await aiohttp_client(create_app(auth_settings(make_settings)))
    ada, bob = await create_account(client), await create_account(client)
    cookies = {}
    for account in (ada, bob):
        response = await client.post(LOGIN, json=account.credentials())
        assert response.status == 200
        cookies[account.user_id] = response.cookies[client.app[SETTINGS].auth_cookie_name].value
        await write(client, account.user_id, f"by {account.user_id}")
    client.session.cookie_jar.clear()  # each request names its session itself
    name = client.app[SETTINGS].auth_cookie_name

    def session(account_id: uuid.UUID) -> dict[str, str]:
        return {"Cookie": f"{name}={cookies[account_id]}"}

    for _ in range(3):  # misses, then hits from this process's copies, in shared rounds
        reads = await asyncio.gather(
            *(read(client, session(account.user_id)) for account in (ada, bob, bob, ada))
        )
        assert [(status, seen) for status, _, seen in reads] == [
            (200, [f"by {account.user_id}"]) for account in (ada, bob, bob, ada)
        ]
    assert {outcome for _, outcome, _ in reads} == {"hit"}

    response = await client.post(LOGOUT, headers=session(ada.user_id))
    assert response.status == 204
    assert (await read(client, session(ada.user_id)))[0] == 401
    assert (await read(client, session(bob.user_id)))[:2] == (200, "hit")


async def test_a_login_that_names_another_user_is_refused(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await aiohttp_client(create_app(auth_settings(make_settings)))
    ada, bob = await create_account(client), await create_account(client)
    token = (await login_tokens(client, ada))["access_token"]
    await write(client, ada.user_id, "ada's")
    await write(client, bob.user_id, "bob's")
    assert (await read(client, bearer(token))) == (200, "miss", ["ada's"])
    login = jwt.decode(token, options={"verify_signature": False})["sid"]
    prefix = client.app[SETTINGS].redis_key_prefix
    await client.app[REDIS].hset(f"{prefix}auth:login:{login}", "user", str(bob.user_id))
    assert (await read(client, bearer(token)))[0] == 401


async def test_a_deleted_user_is_refused(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await aiohttp_client(create_app(auth_settings(make_settings)))
    account = await create_account(client)
    token = (await login_tokens(client, account))["access_token"]
    await delete_account(client, account)  # before this process ever read the row
    assert (await read(client, bearer(token)))[0] == 401


async def test_a_write_on_one_instance_is_seen_by_the_next_read_on_another(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    settings = auth_settings(make_settings, knowledge_base_enabled=False)  # one Qdrant dir each
    first = await aiohttp_client(create_app(settings))
    second = await aiohttp_client(create_app(settings))
    account = await create_account(first)
    alice = Reader(second, account.user_id, (await login_tokens(first, account))["access_token"])
    await write(first, account.user_id, "message 0")
    assert await read(second, bearer(alice.token)) == (200, "miss", ["message 0"])
    for n in range(1, 6):  # the second instance holds a copy; the first one writes
        assert (await read(second, bearer(alice.token)))[1] == "hit"
        await write(first, account.user_id, f"message {n}")
        status, outcome, seen = await read(second, bearer(alice.token))
        assert (status, outcome, seen[0]) == (200, "miss", f"message {n}")
