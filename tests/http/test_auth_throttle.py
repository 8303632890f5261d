"""Login throttling per email and per client address, with Retry-After and reset on success.

Connections come from different addresses of 127/8, so the per-email and
per-address counters can be told apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from auth_support import AiohttpClient, create_account, login_from, start

from exobrain.config import Settings

WINDOW = 60


async def test_failures_for_one_email_are_throttled_whatever_the_address(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(
        aiohttp_client,
        make_settings,
        auth_login_max_failures=3,
        auth_login_failure_window_seconds=WINDOW,
    )
    account, bystander = await create_account(client), await create_account(client)
    for address in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
        status, _, _ = await login_from(client, address, account.email, "wrong password")
        assert status == 401

    # Even the right password is not checked now: a guess that happens to be right must
    # not be told apart from one that is wrong.
    status, body, retry_after = await login_from(
        client, "127.0.0.5", account.email, account.password
    )
    assert status == 429
    assert isinstance(body["detail"], str)
    assert retry_after is not None
    assert 1 <= int(retry_after) <= WINDOW

    status, _, _ = await login_from(client, "127.0.0.5", bystander.email, bystander.password)
    assert status == 200


async def test_failures_from_one_address_are_throttled_whatever_the_email(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings, auth_login_max_failures=3)
    account = await create_account(client)
    for guess in range(3):
        status, _, _ = await login_from(
            client, "127.0.0.6", f"guess{guess}@example.test", "wrong password"
        )
        assert status == 401

    status, _, retry_after = await login_from(client, "127.0.0.6", account.email, account.password)
    assert status == 429
    assert retry_after is not None
    status, _, _ = await login_from(client, "127.0.0.7", account.email, account.password)
    assert status == 200


async def test_a_success_resets_the_email_counter(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings, auth_login_max_failures=3)
    account = await create_account(client)
    for address in ("127.0.0.2", "127.0.0.3"):
        assert (await login_from(client, address, account.email, "wrong password"))[0] == 401
    assert (await login_from(client, "127.0.0.4", account.email, account.password))[0] == 200

    # Without the reset the second of these would already be the fourth failure.
    for address in ("127.0.0.5", "127.0.0.6", "127.0.0.7"):
        assert (await login_from(client, address, account.email, "wrong password"))[0] == 401
    assert (await login_from(client, "127.0.0.8", account.email, account.password))[0] == 429


async def test_simultaneous_guesses_get_no_more_checks_than_the_limit(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings, auth_login_max_failures=3)
    account = await create_account(client)
    results = await asyncio.gather(
        *(
            login_from(client, f"127.0.1.{index}", account.email, f"guess number {index}")
            for index in range(12)
        )
    )
    assert sorted(status for status, _, _ in results) == [401] * 3 + [429] * 9


async def test_simultaneous_good_logins_wait_for_each_other_instead_of_failing(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings, auth_login_max_failures=3)
    account = await create_account(client)
    results = await asyncio.gather(
        *(login_from(client, "127.0.0.9", account.email, account.password) for _ in range(12))
    )
    assert [status for status, _, _ in results] == [200] * 12
