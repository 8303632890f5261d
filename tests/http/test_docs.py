"""OpenAPI and the offline docs page exist only when APP_ENV=local."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from exobrain.config import Settings
from exobrain.http import create_app

AiohttpClient = Callable[..., Any]


async def test_docs_are_served_offline_locally(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings))
    page = await client.get("/docs")
    assert page.status == 200
    html = await page.text()
    assert not re.search(r"(src|href)=\"https?://", html)  # nothing from a CDN
    for asset in re.findall(r"(?:src|href)=\"(/docs/static/[^\"]+)\"", html):
        response = await client.get(asset)
        assert response.status == 200, asset
        assert len(await response.read()) > 1000
    spec = await (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    assert spec["paths"]["/readyz"]["get"]["summary"].startswith("Readiness")
    assert "/healthz" in spec["paths"]


async def test_docs_are_absent_outside_local(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(app_env="production", auth_jwt_secret="p" * 40)
    client = await aiohttp_client(create_app(settings))
    for path in ("/docs", "/openapi.json", "/docs/static/swagger-ui.css"):
        response = await client.get(path)
        assert response.status == 404, path
        assert await response.json() == {"detail": "Not Found"}
