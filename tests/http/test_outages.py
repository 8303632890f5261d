"""Outages get defined answers: 503 with ``Retry-After`` naming the dependency, an
``unavailable`` frame on a socket that stays open, and no gap once the server is back.

The classification runs against real drivers' real errors; the fault tests stop
and start private embedded servers (never the shared ones).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import nats
import pytest
import redis.asyncio as redis
from aiohttp import web
from auth_support import LOGIN, ME, TOKENS, Account, Client, create_account, start
from orchestrator.support import eventually
from test_chat import eventually_stored, send, signed_in
from test_chat_socket import chat_send, connect, frame, send_turn, until_done

from exobrain.config import Settings
from exobrain.embedded import EmbeddedServer, free_port
from exobrain.http.errors import error_middleware
from exobrain.http.resources import redis_client
from exobrain.store import create_pool

AiohttpClient = Callable[..., Any]
#: A journal read that always needs PostgreSQL: a cached page may not, for up to a second.
JOURNAL = "/api/journal/search?q=before"
POSTGRES_DOWN = (503, "1", {"detail": "postgres unavailable"})


async def answer(response: aiohttp.ClientResponse) -> tuple[int, str | None, Any]:
    return response.status, response.headers.get("Retry-After"), await response.json()


async def ready(client: Client) -> bool:
    return (await client.get("/readyz")).status == 200


async def test_outages_are_503_naming_the_dependency_and_bugs_stay_500(
    aiohttp_client: AiohttpClient, settings: Settings, database_url: str, redis_url: str
) -> None:
    """Real errors of real drivers: refused connections and missing responders are outages;
    a constraint violation, bad SQL or a wrong Redis type are not."""
    nobody = f"127.0.0.1:{free_port()}"
    unreachable_pool = await create_pool(
        settings.model_copy(
            update={
                "assistant_db_dsn": f"postgresql://postgres@{nobody}/x",
                "assistant_db_pool_min_size": 0,
            }
        )
    )
    unreachable_redis = redis_client(
        f"redis://{nobody}/0", connect_timeout=1, socket_timeout=1, retries=2
    )
    shared_redis = redis.Redis.from_url(redis_url)
    connection = await asyncpg.connect(database_url)
    messaging = await nats.connect(str(settings.exobrain_nats_url))
    key = f"{settings.redis_key_prefix}outages:{uuid.uuid4()}"
    await shared_redis.set(key, "not a number")
    await connection.execute(
        "CREATE TEMP TABLE once (id int PRIMARY KEY); INSERT INTO once VALUES (1)"
    )

    cases: dict[str, Callable[[], Awaitable[object]]] = {
        "postgres-refused": lambda: unreachable_pool.fetchval("SELECT 1"),
        "redis-refused": lambda: unreachable_redis.get("anything"),
        "nats-no-responders": lambda: messaging.request("outages.nobody", b"", timeout=5),
        "unique-violation": lambda: connection.execute("INSERT INTO once VALUES (1)"),
        "bad-sql": lambda: connection.execute("SELEKT 1"),
        "redis-wrong-type": lambda: shared_redis.incr(key),
    }

    def route(call: Callable[[], Awaitable[object]]) -> Callable[[web.Request], Awaitable[Any]]:
        async def handler(request: web.Request) -> web.Response:
            await call()
            raise AssertionError("the call was expected to fail")

        return handler

    app = web.Application(middlewares=[error_middleware])
    for name, call in cases.items():
        app.router.add_get(f"/{name}", route(call))
    client = await aiohttp_client(app)
    try:
        answers = {name: await answer(await client.get(f"/{name}")) for name in cases}
    finally:
        await unreachable_pool.close()
        await unreachable_redis.aclose()
        await shared_redis.delete(key)
        await shared_redis.aclose()
        await connection.close()
        await messaging.close()
    bug = (500, None, {"detail": "internal server error"})
    assert answers == {
        "postgres-refused": POSTGRES_DOWN,
        "redis-refused": (503, "1", {"detail": "redis unavailable"}),
        "nats-no-responders": (503, "1", {"detail": "nats unavailable"}),
        "unique-violation": bug,
        "bad-sql": bug,
        "redis-wrong-type": bug,
    }


@pytest.mark.fault
async def test_a_postgres_outage_is_answered_and_nothing_is_stale_after_it(
    aiohttp_client: AiohttpClient,
    orchestrated: Callable[..., Settings],
    private_server: Callable[[str], EmbeddedServer],
) -> None:
    """REST answers 503 naming PostgreSQL; a socket gets ``unavailable`` for its message and
    stays open. Once ``/readyz`` is green the same requests succeed, the first time."""
    postgres = private_server("postgres")
    client = await start(
        aiohttp_client, orchestrated, assistant_db_dsn=postgres.url, main_agent_use_mock=True
    )
    account, headers = await signed_in(client)
    ws = await connect(client, headers)
    await send_turn(ws, "before")
    await until_done(ws)
    await eventually_stored(client, account, 2)
    # Requests at once fill the pool: every pooled connection is one the restart closes.
    await asyncio.gather(*(client.get(JOURNAL, headers=headers) for _ in range(10)))

    await asyncio.to_thread(postgres.stop)
    requests = requests_of(client, account, headers)
    for name, request in requests.items():
        assert await answer(await request()) == POSTGRES_DOWN, name
    during = uuid.uuid4()
    await ws.send_json(chat_send("during", during))
    assert await frame(ws) == {
        "type": "error",
        "code": "unavailable",
        "message": "postgres unavailable",
        "retry_after": 1,
        "client_message_id": str(during),
    }
    await ws.send_json({"type": "ping"})
    assert await frame(ws) == {"type": "pong"}  # the socket is still open

    await asyncio.to_thread(postgres.start)
    assert await eventually(lambda: ready(client), timeout=30)
    await send_turn(ws, "during", during)  # the same message, sent again: accepted now
    await until_done(ws)
    answers = await asyncio.gather(*(request() for request in requests.values()))
    assert [response.status for response in answers] == [200] * len(requests)
    rows = await eventually_stored(client, account, 6)  # before, during, chat send: 3 turns
    assert [row["content"] for row in rows if row["role"] == "user"] == [
        "before",
        "during",
        "chat send",
    ]
    await ws.close()


def requests_of(
    client: Client, account: Account, headers: dict[str, str]
) -> dict[str, Callable[[], Awaitable[aiohttp.ClientResponse]]]:
    """One request of each kind that needs PostgreSQL; sending twice stores one message."""
    message_id = uuid.uuid4()
    return {
        "login": lambda: client.post(LOGIN, json=account.credentials(**TOKENS)),
        "journal": lambda: client.get(JOURNAL, headers=headers),
        "me": lambda: client.get(ME, headers=headers),
        "chat": lambda: send(client, headers, "chat send", message_id),
    }


@pytest.mark.fault
async def test_logins_work_at_once_after_a_redis_restart(
    aiohttp_client: AiohttpClient,
    orchestrated: Callable[..., Settings],
    private_server: Callable[[str], EmbeddedServer],
) -> None:
    """Connections pooled before a restart are all closed by it; none fails a login after."""
    server = private_server("redis")
    client = await start(aiohttp_client, orchestrated, assistant_cache_redis_url=server.url)
    account = await create_account(client)

    async def logins(count: int) -> list[int]:
        """Logins at once: each takes connections of its own from the pool."""
        responses = await asyncio.gather(
            *(client.post(LOGIN, json=account.credentials(**TOKENS)) for _ in range(count))
        )
        return [response.status for response in responses]

    assert await logins(10) == [200] * 10

    await asyncio.to_thread(server.stop)
    refused = await client.post(LOGIN, json=account.credentials(**TOKENS))
    assert await answer(refused) == (503, "1", {"detail": "redis unavailable"})

    await asyncio.to_thread(server.start)
    assert await logins(10) == [200] * 10
    assert await ready(client)
