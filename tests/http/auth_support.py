"""Helpers for the auth tests: apps with Redis keys of their own, accounts, logins.

Every app started here gets a fresh Redis key prefix, so login throttles and
sessions of one test never meet another's; accounts get unique emails, so tests
share the session's database without seeing each other's users.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient

from exobrain.auth import hash_password
from exobrain.config import Settings
from exobrain.http import create_app
from exobrain.http.resources import PG_POOL
from exobrain.store.users import ensure_password_user

AiohttpClient = Callable[..., Any]
Client = TestClient[web.Request, web.Application]

LOGIN = "/api/auth/login"
REFRESH = "/api/auth/token_refresh"
LOGOUT = "/api/auth/logout"
ME = "/api/users/me"
TOKENS = {"session_mode": "api", "issuance_policy": "tokens"}
PASSWORD = "correct horse battery"


@dataclass(frozen=True, slots=True)
class Account:
    user_id: uuid.UUID
    email: str
    name: str
    password: str

    def credentials(self, **extra: str) -> dict[str, str]:
        return {"email": self.email, "password": self.password, **extra}


def auth_settings(make_settings: Callable[..., Settings], **overrides: Any) -> Settings:
    """Settings whose Redis prefix belongs to one test (still under the session's own)."""
    prefix = f"{make_settings().redis_key_prefix}{secrets.token_hex(4)}:"
    return make_settings(redis_key_prefix=prefix, **overrides)


async def start(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], **overrides: Any
) -> Client:
    client: Client = await aiohttp_client(create_app(auth_settings(make_settings, **overrides)))
    return client


async def create_account(
    client: Client, *, name: str = "Ada Lovelace", password: str = PASSWORD
) -> Account:
    """A user with a password identity; the email has capitals, as people type them."""
    email = f"Ada.{secrets.token_hex(4)}@Example.test"
    password_hash = await asyncio.to_thread(hash_password, password)
    async with client.app[PG_POOL].acquire() as connection, connection.transaction():
        user_id = await ensure_password_user(connection, email, name, password_hash)
    return Account(user_id, email, name, password)


async def delete_account(client: Client, account: Account) -> None:
    await client.app[PG_POOL].execute("DELETE FROM users WHERE id = $1", account.user_id)


async def login_tokens(client: Client, account: Account) -> dict[str, Any]:
    response = await client.post(LOGIN, json=account.credentials(**TOKENS))
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def refresh(client: Client, refresh_token: str) -> aiohttp.ClientResponse:
    return await client.post(REFRESH, json={"refresh_token": refresh_token})


async def me_with(client: Client, access_token: str) -> aiohttp.ClientResponse:
    return await client.get(ME, headers={"Authorization": f"Bearer {access_token}"})


async def login_from(
    client: Client, address: str, email: str, password: str, **fields: str
) -> tuple[int, dict[str, Any], str | None]:
    """Log in over a connection from ``address`` (any of 127/8): status, body, Retry-After.

    Token mode unless ``fields`` say otherwise (``device_token`` among them)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    body = {"email": email, "password": password, **TOKENS, **fields}
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post(client.make_url(LOGIN), json=body) as response,
    ):
        return response.status, await response.json(), response.headers.get("Retry-After")
