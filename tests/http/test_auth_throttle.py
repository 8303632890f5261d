"""Login throttling that cannot lock an owner out: device tokens, per-pair, per-address
and per-email counters, Retry-After.

Connections come from different addresses of 127/8, so the counters can be told apart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from auth_support import LOGIN, Account, AiohttpClient, Client, create_account, login_from, start

from exobrain.auth import DeviceTokens
from exobrain.auth.throttle import client_network
from exobrain.config import Settings

WINDOW = 60
#: Small limits, so each counter can be filled in a few requests.
LIMITS = {
    "auth_login_max_failures": 3,
    "auth_login_max_failures_per_email": 5,
    "auth_login_max_failures_per_address": 100,
    "auth_login_failure_window_seconds": WINDOW,
}


async def throttled(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], **overrides: Any
) -> Client:
    return await start(aiohttp_client, make_settings, **{**LIMITS, **overrides})


async def device_token(client: Client, address: str, account: Account) -> str:
    status, body, _ = await login_from(client, address, account.email, account.password)
    assert status == 200, body
    token: str = body["device_token"]
    return token


async def browser_login(
    client: Client, address: str, account: Account, device_cookie: str | None
) -> tuple[int, str | None]:
    """A browser's login (session mode, the right password) with its device cookie: status,
    the new device cookie."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0))
    cookies = {} if device_cookie is None else {"exobrain_device": device_cookie}
    body = {"email": account.email, "password": account.password}
    async with (
        aiohttp.ClientSession(connector=connector, cookies=cookies) as session,
        session.post(client.make_url(LOGIN), json=body) as response,
    ):
        cookie = response.cookies.get("exobrain_device")
        return response.status, None if cookie is None else cookie.value


async def right_password(client: Client, address: str, account: Account, **fields: str) -> int:
    """The status of a login from ``address`` with the account's own password."""
    return (await login_from(client, address, account.email, account.password, **fields))[0]


async def fail(client: Client, address: str, email: str, times: int, **fields: str) -> None:
    for _ in range(times):
        status, body, _ = await login_from(client, address, email, "wrong password", **fields)
        assert status == 401, body


async def test_an_attacker_hammering_an_email_cannot_lock_out_the_owners_known_devices(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await throttled(aiohttp_client, make_settings)
    owner = await create_account(client)
    token = await device_token(client, "127.0.0.2", owner)
    status, cookie = await browser_login(client, "127.0.0.2", owner, None)
    assert status == 200
    assert cookie is not None

    # From the owner's own address (a shared NAT) and from others: the pair and the email
    # are both locked for every client the account has not seen before.
    await fail(client, "127.0.0.2", owner.email, 3)
    await fail(client, "127.0.0.3", owner.email, 2)
    for address in ("127.0.0.2", "127.0.0.4"):
        status, _, retry_after = await login_from(client, address, owner.email, owner.password)
        assert status == 429, address
        assert retry_after is not None

    status, body, _ = await login_from(
        client, "127.0.0.2", owner.email, owner.password, device_token=token
    )
    assert status == 200, body
    assert body["device_token"] != token  # a new one after every login
    status, renewed = await browser_login(client, "127.0.0.2", owner, cookie)
    assert status == 200
    assert renewed not in (None, cookie)


async def test_a_known_devices_failures_lock_that_device_only(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await throttled(aiohttp_client, make_settings)
    owner = await create_account(client)
    stolen, kept = [await device_token(client, "127.0.0.5", owner) for _ in range(2)]
    await fail(client, "127.0.0.5", owner.email, 3, device_token=stolen)
    status, _, retry_after = await login_from(
        client, "127.0.0.5", owner.email, owner.password, device_token=stolen
    )
    assert status == 429
    assert retry_after is not None

    assert await right_password(client, "127.0.0.5", owner, device_token=kept) == 200
    # The device's failures counted against neither the pair nor the email.
    assert await right_password(client, "127.0.0.5", owner) == 200


async def test_many_users_behind_one_address_can_still_log_in(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await throttled(aiohttp_client, make_settings, auth_login_max_failures_per_address=30)
    office = "127.0.0.6"
    careless, *others = [await create_account(client) for _ in range(11)]
    await fail(client, office, careless.email, 3)
    assert await right_password(client, office, careless) == 429
    # Twenty more failures from the same address, two per person: each then logs in.
    for account in others:
        await fail(client, office, account.email, 2)
        assert await right_password(client, office, account) == 200


async def test_the_address_limit_still_stops_spraying(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await throttled(aiohttp_client, make_settings, auth_login_max_failures_per_address=5)
    account = await create_account(client)
    token = await device_token(client, "127.0.0.8", account)
    for guess in range(5):
        await fail(client, "127.0.0.8", f"guess{guess}@example.test", 1)

    for email, password in [
        ("guess9@example.test", "wrong password"),
        (account.email, account.password),
    ]:
        status, _, retry_after = await login_from(client, "127.0.0.8", email, password)
        assert status == 429, email
        assert retry_after is not None
    assert await right_password(client, "127.0.0.9", account) == 200
    # A device token is good for its own account only, so it cannot spray: it is exempt.
    assert await right_password(client, "127.0.0.8", account, device_token=token) == 200


async def test_a_forged_expired_or_other_users_device_token_gives_no_exemption(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await throttled(aiohttp_client, make_settings)
    victim, other = await create_account(client), await create_account(client)
    genuine = await device_token(client, "127.0.0.10", victim)
    others = await device_token(client, "127.0.0.10", other)
    await fail(client, "127.0.0.11", victim.email, 3)
    await fail(client, "127.0.0.12", victim.email, 2)

    secret = make_settings().auth_jwt_secret.get_secret_value()
    ttl = make_settings().auth_device_cookie_ttl_seconds
    nonce, expires, signature = genuine.split(".")
    invalid = {
        "forged signature": f"{nonce}.{expires}.{signature[::-1]}",
        "longer life": f"{nonce}.{int(expires) + 1}.{signature}",
        "another secret": DeviceTokens("another secret", ttl).issue(victim.email),
        "expired": DeviceTokens(secret, ttl).issue(victim.email, now=time.time() - ttl - 1),
        "another user's": others,
        "garbage": "not.a.token",
    }
    for name, token in invalid.items():
        assert await right_password(client, "127.0.0.10", victim, device_token=token) == 429, name
        status, _ = await browser_login(client, "127.0.0.10", victim, token)
        assert status == 429, name

    assert await right_password(client, "127.0.0.10", victim, device_token=genuine) == 200


async def test_a_throttled_login_says_when_to_retry(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await throttled(aiohttp_client, make_settings)
    account = await create_account(client)
    await fail(client, "127.0.0.13", account.email, 3)
    status, body, retry_after = await login_from(
        client, "127.0.0.13", account.email, account.password
    )
    assert status == 429
    assert retry_after is not None
    assert 1 <= int(retry_after) <= WINDOW
    assert body["detail"].startswith(f"too many failed logins: retry in {retry_after} second")


async def test_a_success_clears_its_pair_but_not_the_email(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await throttled(aiohttp_client, make_settings)
    account = await create_account(client)
    await fail(client, "127.0.0.14", account.email, 2)
    assert await right_password(client, "127.0.0.14", account) == 200
    await fail(client, "127.0.0.14", account.email, 2)  # without the reset: the pair's 4th
    # The email counted all four: one more failure anywhere locks unknown clients out.
    await fail(client, "127.0.0.15", account.email, 1)
    assert await right_password(client, "127.0.0.16", account) == 429


@pytest.mark.parametrize("known_device", [False, True])
async def test_simultaneous_guesses_get_no_more_checks_than_the_limit(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], known_device: bool
) -> None:
    client = await throttled(aiohttp_client, make_settings, auth_login_max_failures_per_email=3)
    account = await create_account(client)
    fields = {"device_token": await device_token(client, "127.0.1.99", account)}
    results = await asyncio.gather(
        *(
            login_from(
                client,
                f"127.0.1.{index}",
                account.email,
                f"guess number {index}",
                **(fields if known_device else {}),
            )
            for index in range(12)
        )
    )
    assert sorted(status for status, _, _ in results) == [401] * 3 + [429] * 9


async def test_simultaneous_good_logins_wait_for_each_other_instead_of_failing(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await throttled(aiohttp_client, make_settings)
    account = await create_account(client)
    results = await asyncio.gather(
        *(login_from(client, "127.0.0.17", account.email, account.password) for _ in range(12))
    )
    assert [status for status, _, _ in results] == [200] * 12


def test_an_ipv6_client_counts_as_its_64() -> None:
    assert client_network("2001:db8:1:2:aaaa::1") == client_network("2001:db8:1:2:bbbb::2")
    assert client_network("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_network("2001:db8:1:3::1") != client_network("2001:db8:1:2::1")
    assert client_network("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_network("192.0.2.7") == "192.0.2.7"
    assert client_network("unknown") == "unknown"
