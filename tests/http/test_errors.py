"""Every 4xx and 5xx leaves as a JSON body, never an HTML page."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from aiohttp import web

from exobrain.config import Settings
from exobrain.http import create_app
from exobrain.http.errors import JsonError

AiohttpClient = Callable[..., Any]


async def fails(request: web.Request) -> web.Response:
    raise ZeroDivisionError


async def refuses(request: web.Request) -> web.Response:
    raise JsonError(429, "slow down", headers={"Retry-After": "7"})


async def reads_body(request: web.Request) -> web.Response:
    return web.Response(body=await request.read())


async def test_errors_are_json(aiohttp_client: AiohttpClient, settings: Settings) -> None:
    app = create_app(settings)
    app.router.add_get("/test/fails", fails)
    app.router.add_get("/test/refuses", refuses)
    app.router.add_post("/test/body", reads_body)
    client = await aiohttp_client(app)

    missing = await client.get("/no/such/path")
    assert (missing.status, await missing.json()) == (404, {"detail": "Not Found"})

    wrong_method = await client.delete("/healthz")
    assert (wrong_method.status, await wrong_method.json()) == (
        405,
        {"detail": "Method Not Allowed"},
    )
    assert "GET" in wrong_method.headers["Allow"]

    crashed = await client.get("/test/fails")
    assert (crashed.status, await crashed.json()) == (500, {"detail": "internal server error"})

    refused = await client.get("/test/refuses")
    assert (refused.status, await refused.json()) == (429, {"detail": "slow down"})
    assert refused.headers["Retry-After"] == "7"

    too_big = await client.post(
        "/test/body",
        data=io.BytesIO(b"x" * (2 * 1024 * 1024)),
        headers={"Content-Type": "application/json"},
    )
    assert too_big.status == 413
    assert too_big.content_type == "application/json"
    assert "detail" in await too_big.json()
