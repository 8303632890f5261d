"""Bad request bodies: 400 for invalid JSON, 422 per offending field, 413 when too big; all JSON."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
from auth_support import LOGIN, REFRESH, AiohttpClient, start

from exobrain.config import Settings


async def test_invalid_json_is_400(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings)
    response = await client.post(
        LOGIN, data=b'{"email": "a@b.c", ', headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert response.content_type == "application/json"
    assert await response.json() == {"detail": "request body is not valid JSON"}


@pytest.mark.parametrize(
    ("path", "body", "expected"),
    [
        (
            LOGIN,
            {"email": 5, "password": "short", "session_mode": "phone"},
            {
                ("email", "string_type"),
                ("password", "string_too_short"),
                ("session_mode", "literal_error"),
            },
        ),
        (LOGIN, {"issuance_policy": "tokens"}, {("email", "missing"), ("password", "missing")}),
        (LOGIN, [1, 2], {(None, "model_type")}),
        (REFRESH, {}, {("refresh_token", "missing")}),
    ],
)
async def test_schema_violations_are_422_per_field(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    path: str,
    body: Any,
    expected: set[tuple[str | None, str]],
) -> None:
    client = await start(aiohttp_client, make_settings)
    response = await client.post(path, json=body)
    assert response.status == 422
    detail = (await response.json())["detail"]
    found = set()
    for problem in detail:
        assert set(problem) == {"loc", "msg", "type"}  # never the input: it may be a password
        assert problem["loc"][0] == "body"
        assert isinstance(problem["msg"], str)
        assert problem["msg"]
        found.add((problem["loc"][1] if len(problem["loc"]) > 1 else None, problem["type"]))
    assert found == expected


async def test_empty_body_is_a_missing_body(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings)
    response = await client.post(LOGIN)
    assert response.status == 422
    assert await response.json() == {
        "detail": [{"loc": ["body"], "msg": "Field required", "type": "missing"}]
    }


async def test_oversized_body_is_413_json(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings)
    response = await client.post(
        LOGIN,
        data=io.BytesIO(b" " * (2 * 1024 * 1024)),
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 413
    assert response.content_type == "application/json"
    assert isinstance((await response.json())["detail"], str)
