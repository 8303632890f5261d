"""Bad input is a 4xx naming what is wrong, never a 500 (found by fuzzing, issue 14).

PostgreSQL cannot store or compare the NUL character, so every string a
request carries refuses it with a 422 naming the field. Header values int()
refuses (``²``), that are not ASCII, or whose bytes are not UTF-8, and bodies
that are not UTF-8, are refused as well.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from auth_support import (
    LOGIN,
    REFRESH,
    AiohttpClient,
    Client,
    create_account,
    login_tokens,
    start,
)

from exobrain.config import Settings

NUL = "\x00"


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]) -> Client:
    return await start(
        aiohttp_client, make_settings, main_agent_use_mock=True, ops_token="the-ops-token"
    )


@pytest.fixture
async def bearer(client: Client) -> dict[str, str]:
    tokens = await login_tokens(client, await create_account(client))
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def _locs(response: Any) -> list[list[str | int]]:
    assert response.status == 422, await response.text()
    return [problem["loc"] for problem in (await response.json())["detail"]]


@pytest.mark.parametrize(
    ("route", "body", "loc"),
    [
        (
            "POST /api/chat/message",
            {"message": f"hi{NUL}there", "client_message_id": str(uuid.uuid4())},
            ["body", "message"],
        ),
        (
            "PATCH /api/users/me/configs",
            {"update": {"key": f"frontend.theme{NUL}", "value": "gruvbox-dark"}},
            ["body", "update", "key"],
        ),
        (
            "PATCH /api/users/me/configs",
            {"update": {"key": "frontend.theme", "value": f"gruvbox{NUL}"}},
            ["body", "update", "value", "str"],
        ),
        (
            "POST /api/knowledge/update",
            {"journal_reference": f"2025/01/14{NUL}"},
            ["body", "journal_reference"],
        ),
    ],
)
async def test_a_nul_in_what_is_stored_is_422_naming_the_field(
    client: Client, bearer: dict[str, str], route: str, body: dict[str, Any], loc: list[str]
) -> None:
    method, path = route.split()
    response = await client.request(method, path, json=body, headers=bearer)
    assert await _locs(response) == [loc]


async def test_a_nul_in_a_search_query_is_422_naming_it(
    client: Client, bearer: dict[str, str]
) -> None:
    response = await client.get("/api/journal/search", params={"q": f"a{NUL}b"}, headers=bearer)
    assert await _locs(response) == [["query", "q"]]


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        (LOGIN, {"email": f"ada{NUL}@example.test", "password": "long enough"}, ["body", "email"]),
        (REFRESH, {"refresh_token": f"token{NUL}"}, ["body", "refresh_token"]),
    ],
)
async def test_a_nul_in_credentials_is_422_naming_the_field(
    client: Client, path: str, body: dict[str, str], loc: list[str]
) -> None:
    response = await client.post(path, json=body)
    problems = (await response.json())["detail"]
    assert response.status == 422
    assert [problem["loc"] for problem in problems] == [loc]
    assert "NUL" in problems[0]["msg"]


@pytest.mark.parametrize("value", ["²", "٣", "-1", "x", "9" * 30])
async def test_a_last_event_id_that_is_no_sequence_is_422_naming_the_header(
    client: Client, bearer: dict[str, str], value: str
) -> None:
    stream = f"/api/chat/stream/{uuid.uuid4()}"
    response = await client.get(stream, headers={**bearer, "Last-Event-ID": value})
    assert await _locs(response) == [["header", "Last-Event-ID"]]


async def _raw(client: Client, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes as they are (no client would encode these headers): status and body."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        length = b"Content-Length: %d\r\n" % len(body)
        writer.write(head + b"\r\nHost: test\r\nConnection: close\r\n" + length + b"\r\n" + body)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(
    ("head", "named"),
    [
        (b"GET /api/users/me HTTP/1.1\r\nAuthorization: Bearer \xff\xfe", b"Authorization"),
        (b"GET /api/users/me HTTP/1.1\r\nCookie: exobrain_session=\xff", b"Cookie"),
        (b"GET /api/ops/actors HTTP/1.1\r\nAuthorization: Bearer \xff\xfe", b"Authorization"),
        (b"GET /api/chat/ws HTTP/1.1\r\nOrigin: http://\xff", b"Origin"),
        (b"GET /api/chat/stream/x HTTP/1.1\r\nLast-Event-ID: \xff", b"Last-Event-ID"),
        (b"GET /healthz HTTP/1.1\r\nX-Anything: \xc3", b"X-Anything"),
    ],
)
async def test_a_header_whose_bytes_are_no_utf8_is_400_naming_it(
    client: Client, head: bytes, named: bytes
) -> None:
    status, body = await _raw(client, head)
    assert (status, body) == (400, b'{"detail":"the %s header is not valid UTF-8"}' % named)


@pytest.mark.parametrize(
    "head",
    [
        b"GET /api/users/me HTTP/1.1\r\nAuthorization: Bearer \xc2\xb2",
        b"GET /api/ops/actors HTTP/1.1\r\nAuthorization: Bearer \xc2\xb2",
        b"GET /api/users/me HTTP/1.1\r\nCookie: exobrain_session=\xc2\xb2",
    ],
)
async def test_credentials_that_are_no_ascii_are_401(client: Client, head: bytes) -> None:
    assert (await _raw(client, head))[0] == 401


async def test_a_body_that_is_no_utf8_is_400(client: Client) -> None:
    head = b"POST /api/auth/login HTTP/1.1\r\nContent-Type: application/json"
    status, body = await _raw(client, head, b'{"email": "\xff", "password": "long enough"}')
    assert (status, body) == (400, b'{"detail":"request body is not valid JSON"}')
