"""Ops endpoints, escalation seen by /readyz, and the actor tree's lifecycle with the app."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pykka
from aiohttp import web

from exobrain.actors.journal import AppendMessages, NewMessage, append
from exobrain.config import Settings
from exobrain.http import create_app
from exobrain.http.actors import ACTOR_CHILDREN, FATAL, JOURNAL
from exobrain.http.resources import PG_POOL
from exobrain.supervision import ActorUnavailable, ChildSpec, SupervisedActor

AiohttpClient = Callable[..., Any]


class Crashing(SupervisedActor):
    """Dies on start, every time."""

    def started(self) -> None:
        raise RuntimeError("cannot start")


def crashing_child(app: web.Application) -> ChildSpec:
    return ChildSpec("crashy", Crashing.start)


def actor_threads() -> set[str]:
    """Threads of our actors (pykka names them after the actor class)."""
    classes = {"Supervisor", "JournalActor", "Crashing"}
    return {t.name for t in threading.enumerate() if t.name.rsplit("-", 1)[0] in classes}


async def test_actor_tree_is_visible_locally(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings))
    response = await client.get("/api/ops/actors")
    assert response.status == 200
    body = await response.json()
    assert body["failed"] == []
    tree = body["tree"]
    assert (tree["name"], tree["class"], tree["state"]) == ("root", "Supervisor", "running")
    journal, sessions, knowledge = tree["children"]
    assert (knowledge["name"], knowledge["class"]) == ("knowledge", "KnowledgeDispatchActor")
    assert (sessions["name"], sessions["class"], sessions["children"]) == (
        "sessions",
        "SessionManager",
        [],
    )
    assert journal["name"] == "journal"
    assert journal["class"] == "JournalActor"
    assert journal["state"] == "running"
    assert journal["restarts"] == 0
    assert journal["last_failure"] is None
    assert journal["mailbox"] >= 0
    assert journal["uptime_s"] >= 0


async def test_ops_need_the_token_when_one_is_set(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await aiohttp_client(create_app(make_settings(ops_token="ops-secret")))
    for path in ("/api/ops/actors", "/metrics"):
        missing = await client.get(path)
        assert missing.status == 401
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        wrong = await client.get(path, headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401
        right = await client.get(path, headers={"Authorization": "Bearer ops-secret"})
        assert right.status == 200, path


async def test_ops_are_refused_outside_local_without_a_token(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(app_env="production", auth_jwt_secret="p" * 40)
    client = await aiohttp_client(create_app(settings))
    for path in ("/api/ops/actors", "/metrics"):
        response = await client.get(path)
        assert response.status == 403
        assert "OPS_TOKEN" in (await response.json())["detail"]


async def test_metrics_cover_requests_actors_and_journal(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    app = create_app(settings)
    client = await aiohttp_client(app)
    await client.get("/healthz")
    await client.get("/no/such/page")
    user_id = await app[PG_POOL].fetchval(
        "INSERT INTO users (email, name) VALUES ($1, 'M') RETURNING id", f"{uuid.uuid4()}@m.test"
    )
    await append(
        app[JOURNAL],
        AppendMessages(user_id, "2026/11/24", (NewMessage("user", "measure me"),)),
        timeout=10,
    )
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    assert 'http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert 'http_request_duration_seconds_bucket{le="0.005",method="GET",route="/healthz"}' in text
    assert 'actor_mailbox_depth{actor="root/journal"}' in text
    assert 'actor_up{actor="root/journal"} 1.0' in text
    assert "journal_batch_size_count 1.0" in text
    assert "journal_commit_seconds_count 1.0" in text
    assert "websocket_connections 0.0" in text


async def test_an_escalated_child_makes_readyz_fail_and_can_stop_the_process(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(supervisor_max_restarts=2, supervisor_exit_on_escalation=True)
    app = create_app(settings)
    app[ACTOR_CHILDREN].append(crashing_child)
    client = await aiohttp_client(app)
    await asyncio.wait_for(app[FATAL].wait(), timeout=10)
    response = await client.get("/readyz")
    assert response.status == 503
    body = await response.json()
    assert "root/crashy" in body["checks"]["actors"]["error"]
    assert "cannot start" in body["checks"]["actors"]["error"]
    tree = await (await client.get("/api/ops/actors")).json()
    crashy = next(child for child in tree["tree"]["children"] if child["name"] == "crashy")
    assert crashy["state"] == "failed"
    assert crashy["restarts"] == 2
    assert crashy["last_failure"]["message"] == "cannot start"
    assert tree["failed"] == ["root/crashy"]
    journal = next(child for child in tree["tree"]["children"] if child["name"] == "journal")
    assert journal["state"] == "running"  # one-for-one: the sibling is untouched


async def test_shutdown_under_load_loses_no_acknowledged_write(
    make_settings: Callable[..., Settings],
) -> None:
    before = actor_threads()
    app = create_app(make_settings(journal_batch_max_delay_ms=5))
    runner = web.AppRunner(app)
    await runner.setup()
    pool = app[PG_POOL]
    user_id = await pool.fetchval(
        "INSERT INTO users (email, name) VALUES ($1, 'S') RETURNING id", f"{uuid.uuid4()}@s.test"
    )

    acknowledged: list[uuid.UUID] = []
    refused: list[Exception] = []
    under_load = asyncio.Event()

    async def writer(n: int) -> None:
        """Write until the journal refuses: the refusal is the only acceptable failure."""
        for turn in range(10_000):
            command = AppendMessages(user_id, "2026/11/24", (NewMessage("user", f"{n}.{turn}"),))
            try:
                [stored] = await append(app[JOURNAL], command, timeout=10)
            except ActorUnavailable as exc:
                refused.append(exc)
                return
            acknowledged.append(stored.id)
            if len(acknowledged) >= 200:
                under_load.set()

    writers = [asyncio.create_task(writer(n)) for n in range(20)]
    await asyncio.wait_for(under_load.wait(), timeout=30)  # shut down in mid-stream
    await runner.cleanup()
    await asyncio.gather(*writers)
    assert len(refused) == 20

    connection = await asyncpg.connect(str(make_settings().assistant_db_dsn))
    try:
        stored = {
            row["id"]
            for row in await connection.fetch("SELECT id FROM messages WHERE user_id = $1", user_id)
        }
    finally:
        await connection.close()
    assert set(acknowledged) <= stored
    assert actor_threads() == before
    assert not [ref for ref in pykka.ActorRegistry.get_all() if ref.is_alive()]
