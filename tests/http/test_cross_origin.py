"""Cross-site protection: unsafe requests need a same-origin page and JSON; the cookie
WebSocket needs an origin of the same scheme, host and port."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from auth_support import LOGIN, LOGOUT, ME, AiohttpClient, Client, create_account, start

from exobrain.config import Settings

CONFIGS = "/api/users/me/configs"
THEME = {"update": {"key": "frontend.theme", "value": "purple-intelligence"}}
EVIL = "http://evil.example"
WS = "/api/chat/ws"


def own_origin(client: Client, scheme: str = "http") -> str:
    return f"{scheme}://{client.host}:{client.port}"


async def signed_in(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], **overrides: Any
) -> Client:
    """A client whose cookie jar holds a browser session (logged in as a script would)."""
    client = await start(aiohttp_client, make_settings, **overrides)
    account = await create_account(client)
    assert (await client.post(LOGIN, json=account.credentials())).status == 200
    return client


async def refusal(response: aiohttp.ClientResponse) -> str:
    assert response.status == 403, await response.text()
    detail: str = (await response.json())["detail"]
    return detail


async def test_a_cross_site_form_post_is_refused_and_changes_nothing(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await signed_in(aiohttp_client, make_settings)
    # What a form on another site can send: text/plain carrying a JSON-looking body.
    forged = await client.patch(
        CONFIGS,
        data=b'{"update": {"key": "frontend.theme", "value": "purple-intelligence"}}',
        headers={"Origin": EVIL, "Content-Type": "text/plain"},
    )
    assert "Origin" in await refusal(forged)
    logout = await client.post(LOGOUT, headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
    assert "Origin" in await refusal(logout)

    configs = await (await client.get(CONFIGS)).json()
    theme = next(config for config in configs["configs"] if config["key"] == "frontend.theme")
    assert theme["using_default"] is True
    assert (await client.get(ME)).status == 200  # the session was not ended


async def test_the_frontend_on_its_own_origin_works_as_before(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await signed_in(aiohttp_client, make_settings)
    headers = {"Origin": own_origin(client), "Sec-Fetch-Site": "same-origin"}
    response = await client.patch(CONFIGS, json=THEME, headers=headers)
    assert response.status == 200, await response.text()
    assert (await client.post(LOGOUT, headers=headers)).status == 204


@pytest.mark.parametrize(
    "origin",
    [
        "https://{host}:{port}",  # the scheme differs
        "http://{host}:1",  # the port differs
        "http://localhost:{port}",  # the host differs
        "null",  # sandboxed frames, privacy-sensitive redirects
        "http://{host}:{port}/path",  # not an origin at all
    ],
)
async def test_an_origin_must_match_in_scheme_host_and_port(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], origin: str
) -> None:
    client = await signed_in(aiohttp_client, make_settings)
    headers = {"Origin": origin.format(host=client.host, port=client.port)}
    assert "Origin" in await refusal(await client.patch(CONFIGS, json=THEME, headers=headers))


async def test_sec_fetch_site_same_origin_vouches_for_a_request_whatever_its_origin(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    """A proxy that rewrites Host (or ends TLS) hides the page's origin from us; the
    browser's own Sec-Fetch-Site, which no page can set, still tells."""
    client = await signed_in(aiohttp_client, make_settings)
    headers = {"Origin": "https://app.example.test", "Sec-Fetch-Site": "same-origin"}
    assert (await client.patch(CONFIGS, json=THEME, headers=headers)).status == 200
    for site in ("same-site", "cross-site", "none"):
        refused = await client.patch(CONFIGS, json=THEME, headers={"Sec-Fetch-Site": site})
        assert "Sec-Fetch-Site" in await refusal(refused), site


async def test_a_request_without_origin_or_fetch_metadata_is_not_from_a_browser(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    """Browsers send Origin with every POST, PUT, PATCH and DELETE: a request without it
    is a script's, which may use a cookie jar; it must still send JSON, which no form can."""
    client = await signed_in(aiohttp_client, make_settings)
    assert (await client.patch(CONFIGS, json=THEME)).status == 200
    for content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain",
    ):
        forged = await client.patch(
            CONFIGS, data=b'{"update": {}}', headers={"Content-Type": content_type}
        )
        assert "Content-Type" in await refusal(forged), content_type
    # An empty form still names its type: only a body-less request without one passes.
    empty_form = await client.post(
        LOGOUT, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert "Content-Type" in await refusal(empty_form)
    assert (await client.post(LOGOUT)).status == 204


async def test_a_same_origin_request_still_needs_json(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await signed_in(aiohttp_client, make_settings)
    headers = {"Origin": own_origin(client), "Content-Type": "text/plain"}
    forged = await client.patch(CONFIGS, data=b'{"update": {}}', headers=headers)
    assert "Content-Type" in await refusal(forged)
    merge = {"Origin": own_origin(client), "Content-Type": "application/merge-patch+json"}
    assert (await client.patch(CONFIGS, json=THEME, headers=merge)).status == 200


async def test_bearer_requests_carry_no_ambient_credential_and_are_not_checked(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings)
    account = await create_account(client)
    tokens = await (await client.post(LOGIN, json=account.credentials(session_mode="api"))).json()
    headers = {
        "Authorization": f"Bearer {tokens['access_token']}",
        "Origin": EVIL,
        "Content-Type": "text/plain",
    }
    response = await client.patch(
        CONFIGS,
        data=b'{"update": {"key": "frontend.theme", "value": "purple-intelligence"}}',
        headers=headers,
    )
    assert response.status == 200, await response.text()


async def test_logging_in_from_another_site_is_refused(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    """Login CSRF: another site must not sign the browser in to an account of its choosing."""
    client = await start(aiohttp_client, make_settings)
    account = await create_account(client)
    forged = await client.post(LOGIN, json=account.credentials(), headers={"Origin": EVIL})
    assert "Set-Cookie" not in forged.headers
    assert "Origin" in await refusal(forged)
    own = await client.post(
        LOGIN, json=account.credentials(), headers={"Origin": own_origin(client)}
    )
    assert own.status == 200


async def test_listed_origins_are_allowed(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await signed_in(
        aiohttp_client, make_settings, auth_allowed_origins=frozenset({"https://app.example.test"})
    )
    for origin in ("https://app.example.test", "https://APP.example.test:443"):
        response = await client.patch(CONFIGS, json=THEME, headers={"Origin": origin})
        assert response.status == 200, origin
    response = await client.patch(
        CONFIGS, json=THEME, headers={"Origin": "http://app.example.test"}
    )
    assert "Origin" in await refusal(response)


async def test_outside_local_a_browser_that_sends_the_cookie_is_on_https(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    """The Secure cookie reaches us over a proxy that ended TLS: our own origin is https."""
    client = await start(
        aiohttp_client, make_settings, app_env="production", auth_jwt_secret="x" * 40
    )
    account = await create_account(client)
    login = await client.post(LOGIN, json=account.credentials())
    # The test's cookie jar keeps a Secure cookie to itself over plain http: send it as
    # the browser behind the proxy does.
    cookie = f"exobrain_session={login.cookies['exobrain_session'].value}"
    https = {"Cookie": cookie, "Origin": own_origin(client, "https")}
    assert (await client.patch(CONFIGS, json=THEME, headers=https)).status == 200
    http = {"Cookie": cookie, "Origin": own_origin(client, "http")}
    assert "Origin" in await refusal(await client.patch(CONFIGS, json=THEME, headers=http))


async def test_the_cookie_socket_compares_scheme_host_and_port(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await signed_in(aiohttp_client, make_settings)
    for origin in (
        own_origin(client, "https"),
        f"http://{client.host}:1",
        f"http://localhost:{client.port}",
    ):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(WS, headers={"Origin": origin})
        assert refused.value.status == 403, origin
    ws = await client.ws_connect(WS, headers={"Origin": own_origin(client)})
    await ws.send_json({"type": "ping"})
    assert (await ws.receive_json(timeout=10)) == {"type": "pong"}
    await ws.close()


async def test_the_socket_takes_its_own_origin_and_both_allowlists(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await signed_in(
        aiohttp_client,
        make_settings,
        auth_allowed_origins=frozenset({"https://app.example.test"}),
        chat_ws_allowed_origins=frozenset({"https://chat.example.test"}),
    )
    for origin in (own_origin(client), "https://app.example.test", "https://chat.example.test"):
        ws = await client.ws_connect(WS, headers={"Origin": origin})
        await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(WS, headers={"Origin": "https://evil.example.test"})
    assert refused.value.status == 403
