"""Liveness and readiness against real servers, including servers that stop and return."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from exobrain.config import Settings
from exobrain.embedded import EmbeddedServer, free_port
from exobrain.http import create_app

AiohttpClient = Callable[..., Any]


async def readiness(
    client: TestClient[web.Request, web.Application],
) -> tuple[int, dict[str, Any]]:
    response = await client.get("/readyz")
    return response.status, await response.json()


async def test_healthz_is_cheap_and_always_ok(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_checks_every_configured_dependency(
    aiohttp_client: AiohttpClient, orchestrated: Callable[..., Settings]
) -> None:
    client = await aiohttp_client(create_app(orchestrated()))
    status, body = await readiness(client)
    assert status == 200
    assert body["status"] == "ok"
    assert set(body["checks"]) == {
        "postgres",
        "redis",
        "nats",
        "qdrant",
        "actors",
        "orchestrator",
        "leases",
    }
    assert all(check["status"] == "ok" for check in body["checks"].values())


async def test_memgraph_is_checked_only_when_configured(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    nobody_listens = f"bolt://127.0.0.1:{free_port()}"
    client = await aiohttp_client(create_app(make_settings(exobrain_memgraph_url=nobody_listens)))
    status, body = await readiness(client)
    assert status == 503
    assert body["checks"]["memgraph"]["status"] == "error"
    assert body["checks"]["postgres"]["status"] == "ok"


async def test_readyz_shows_why_a_check_failed_only_to_operators(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    nobody_listens = f"bolt://127.0.0.1:{free_port()}"
    client = await aiohttp_client(
        create_app(
            make_settings(
                app_env="production",
                auth_jwt_secret="x" * 40,
                ops_token="operator-token",
                exobrain_memgraph_url=nobody_listens,
            )
        )
    )
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        response = await client.get("/readyz", headers=headers)
        assert response.status == 503
        body = await response.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["memgraph"] == {"status": "error"}
        assert all(set(check) == {"status"} for check in body["checks"].values())
        text = await response.text()
        assert "127.0.0.1" not in text
        assert nobody_listens.rsplit(":", 1)[1] not in text

    response = await client.get("/readyz", headers={"Authorization": "Bearer operator-token"})
    assert response.status == 503
    checks = (await response.json())["checks"]
    assert checks["memgraph"]["status"] == "error"
    assert checks["memgraph"]["error"]
    assert "latency_ms" in checks["postgres"]


async def test_readyz_shows_statuses_only_outside_local_without_an_ops_token(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(app_env="production", auth_jwt_secret="x" * 40)
    client = await aiohttp_client(create_app(settings))
    _, body = await readiness(client)
    assert body["checks"]["postgres"] == {"status": "ok"}
    assert all(set(check) == {"status"} for check in body["checks"].values())


@pytest.mark.fault
@pytest.mark.parametrize(
    ("kind", "setting"),
    [("postgres", "assistant_db_dsn"), ("redis", "assistant_cache_redis_url")],
)
async def test_readyz_names_a_stopped_dependency_and_recovers(
    aiohttp_client: AiohttpClient,
    orchestrated: Callable[..., Settings],
    private_server: Callable[[str], EmbeddedServer],
    kind: str,
    setting: str,
) -> None:
    server = private_server(kind)
    client = await aiohttp_client(create_app(orchestrated(**{setting: server.url})))
    assert (await readiness(client))[0] == 200

    await asyncio.to_thread(server.stop)
    status, body = await readiness(client)
    assert status == 503
    assert body["status"] == "unavailable"
    assert body["checks"][kind]["status"] == "error"
    assert body["checks"][kind]["error"]
    failing = {name for name, check in body["checks"].items() if check["status"] != "ok"}
    assert failing == ({kind, "leases"} if kind == "redis" else {kind})  # leases live in Redis

    await asyncio.to_thread(server.start)
    for _ in range(50):  # clients reconnect on their own schedule
        status, body = await readiness(client)
        if status == 200:
            break
        await asyncio.sleep(0.1)
    assert status == 200, body


async def test_start_up_fails_clearly_when_a_dependency_never_answers(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(
        assistant_cache_redis_url=f"redis://127.0.0.1:{free_port()}/0",
        startup_dependency_timeout_seconds=0.5,
    )
    app = create_app(settings)
    runner = web.AppRunner(app)
    with pytest.raises(RuntimeError, match=r"Redis unreachable for 0\.5s"):
        await runner.setup()
    await runner.cleanup()
