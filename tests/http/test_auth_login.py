"""Logging in: browser sessions by cookie, token pairs, logout, and answers that leak nothing."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from http.cookies import SimpleCookie

from aiohttp import ClientResponse
from auth_support import (
    LOGIN,
    LOGOUT,
    ME,
    TOKENS,
    AiohttpClient,
    Client,
    create_account,
    me_with,
    start,
)

from exobrain.config import Settings


def session_cookie(
    response: ClientResponse, name: str = "exobrain_session"
) -> dict[str, str | bool]:
    """The cookie ``name`` the response sets, with its attributes."""
    for set_cookie in response.headers.getall("Set-Cookie", []):
        if name in (cookies := SimpleCookie(set_cookie)):
            morsel = cookies[name]
            return {"value": morsel.value, **{key: morsel[key] for key in morsel if morsel[key]}}
    raise AssertionError(f"no {name} cookie set")


async def test_web_login_sets_a_session_cookie_that_alone_authenticates(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings)
    account = await create_account(client)

    response = await client.post(LOGIN, json=account.credentials())
    assert response.status == 200
    assert await response.json() == {"session_established": True, "user_name": account.name}
    cookie = session_cookie(response)
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert "secure" not in cookie  # APP_ENV=local serves plain http
    assert cookie["max-age"] == "604800"
    device = session_cookie(response, "exobrain_device")
    assert (device["httponly"], device["samesite"], device["path"]) == (True, "Lax", "/")
    assert "secure" not in device
    assert device["max-age"] == "31536000"

    me = await client.get(ME)  # the cookie jar sends the cookie; nothing else identifies us
    assert me.status == 200
    assert await me.json() == {"name": account.name, "email": account.email}


async def test_session_cookie_is_secure_outside_local(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(
        aiohttp_client, make_settings, app_env="production", auth_jwt_secret="x" * 40
    )
    account = await create_account(client)
    response = await client.post(LOGIN, json=account.credentials(session_mode="web"))
    assert response.status == 200
    for name in ("exobrain_session", "exobrain_device"):
        cookie = session_cookie(response, name)
        assert cookie["secure"] is True
        assert (cookie["httponly"], cookie["samesite"], cookie["path"]) == (True, "Lax", "/")


async def test_every_other_mode_gets_a_token_pair(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings, auth_access_token_ttl_seconds=120)
    account = await create_account(client)
    for mode, policy in [("api", "tokens"), ("api", "session"), ("web", "tokens")]:
        response = await client.post(
            LOGIN,
            json=account.credentials(session_mode=mode, issuance_policy=policy),
        )
        assert response.status == 200, (mode, policy)
        assert "Set-Cookie" not in response.headers
        body = await response.json()
        assert set(body) == {
            "access_token",
            "refresh_token",
            "token_type",
            "expires_in",
            "device_token",
        }
        assert (body["token_type"], body["expires_in"]) == ("bearer", 120)
        me = await me_with(client, body["access_token"])
        assert await me.json() == {"name": account.name, "email": account.email}


async def test_email_is_matched_case_insensitively(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings)
    account = await create_account(client)
    for email in (account.email.lower(), account.email.upper()):
        response = await client.post(LOGIN, json={**account.credentials(**TOKENS), "email": email})
        assert response.status == 200, email


async def test_wrong_password_and_unknown_email_get_the_same_401(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings)
    account = await create_account(client)
    attempts = [
        {"email": account.email, "password": "not the password"},
        {"email": f"nobody-{account.email}", "password": account.password},
    ]
    for credentials in attempts:
        response = await client.post(LOGIN, json=credentials)
        assert response.status == 401
        assert await response.json() == {"detail": "invalid credentials"}
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "Set-Cookie" not in response.headers


async def test_logout_ends_the_server_session_and_clears_the_cookie(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings)
    account = await create_account(client)
    login = await client.post(LOGIN, json=account.credentials())
    session_id = session_cookie(login)["value"]
    assert (await client.get(ME)).status == 200

    logout = await client.post(LOGOUT)
    assert logout.status == 204
    cleared = session_cookie(logout)
    assert (cleared["value"], cleared["max-age"], cleared["path"]) == ("", "0", "/")
    assert (await client.get(ME)).status == 401

    # A copy of the cookie kept by an attacker is worthless too: the session is gone.
    replayed = await client.get(ME, headers={"Cookie": f"exobrain_session={session_id}"})
    assert replayed.status == 401
    assert await replayed.json() == {"detail": "authentication required"}


async def test_logout_without_a_session_is_still_204(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings)
    assert (await client.post(LOGOUT)).status == 204


async def median_login_seconds(client: Client, body: dict[str, str], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = await client.post(LOGIN, json=body)
        times.append(time.perf_counter() - started)
        assert response.status == 401
    return statistics.median(times)


async def test_unknown_email_costs_what_a_wrong_password_costs(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings, auth_login_max_failures=1000)
    account = await create_account(client)
    wrong_password = {"email": account.email, "password": "not the password"}
    unknown_email = {"email": f"nobody-{account.email}", "password": "not the password"}
    await median_login_seconds(client, wrong_password, 1)  # warm-up: connections, plans
    unknown, wrong = [], []
    for _ in range(3):  # interleaved, so drift in machine load hits both alike
        unknown.append(await median_login_seconds(client, unknown_email, 3))
        wrong.append(await median_login_seconds(client, wrong_password, 3))
    ratio = statistics.median(unknown) / statistics.median(wrong)
    assert 0.5 < ratio < 2.0, (unknown, wrong)
