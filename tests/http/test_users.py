"""``/api/users/me``, and what the auth layer answers to requests it cannot trust."""

from __future__ import annotations

from collections.abc import Callable

from auth_support import LOGIN, ME, AiohttpClient, create_account, start

from exobrain.config import Settings
from exobrain.http.resources import PG_POOL


async def test_me_without_credentials_is_401(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings)
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic dXNlcjpwdw=="}):
        response = await client.get(ME, headers=headers)
        assert response.status == 401, headers
        assert await response.json() == {"detail": "authentication required"}
        assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_a_bad_bearer_token_is_refused_even_with_a_good_cookie(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings)
    account = await create_account(client)
    assert (await client.post(LOGIN, json=account.credentials())).status == 200
    assert (await client.get(ME)).status == 200
    response = await client.get(ME, headers={"Authorization": "Bearer not-a-token"})
    assert response.status == 401


async def test_me_reflects_the_current_name(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings)
    account = await create_account(client)
    assert (await client.post(LOGIN, json=account.credentials())).status == 200
    await client.app[PG_POOL].execute(
        "UPDATE users SET name = 'Ada King' WHERE id = $1", account.user_id
    )
    assert await (await client.get(ME)).json() == {"name": "Ada King", "email": account.email}


async def test_auth_routes_document_themselves(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings)
    paths = (await (await client.get("/openapi.json")).json())["paths"]
    assert paths[ME]["get"]["summary"].startswith("The signed-in user")
    for path in (LOGIN, "/api/auth/token_refresh", "/api/auth/logout"):
        assert paths[path]["post"]["summary"], path
