"""The service started on the reference's database: it adopts it, then serves its users.

Each test builds the reference's final schema and data in a database of its own
(``tests/reference``); the app migrates it at start-up, as a deployment would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from auth_support import LOGIN, TOKENS, AiohttpClient, Client, me_with, start
from orchestrator.support import JobsStream, eventually, jobs_stream
from reference.database import ReferenceData, ReferenceUser, create_reference_database

from exobrain.config import Settings
from exobrain.http.resources import PG_POOL


@pytest.fixture
async def stream(nats_url: str, namespace: str) -> AsyncIterator[JobsStream]:
    async with jobs_stream(nats_url, namespace) as created:
        yield created


Served = tuple[Client, ReferenceData]


async def serve(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    database_factory: Callable[[], str],
    *,
    configs: bool = False,
    settings: dict[str, Any] | None = None,
) -> Served:
    dsn = database_factory()
    data = await create_reference_database(dsn, configs=configs)
    client = await start(aiohttp_client, make_settings, assistant_db_dsn=dsn, **(settings or {}))
    return client, data


async def sign_in(client: Client, user: ReferenceUser) -> dict[str, str]:
    body = {"email": user.email, "password": user.password, **TOKENS}
    response = await client.post(LOGIN, json=body)
    assert response.status == 200, (user.email, await response.text())
    return {"Authorization": f"Bearer {(await response.json())['access_token']}"}


async def get(client: Client, headers: dict[str, str], path: str, **params: str) -> Any:
    response = await client.get(path, headers=headers, params=params)
    assert response.status == 200, await response.text()
    return await response.json()


async def test_every_reference_user_logs_in_with_their_password(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    database_factory: Callable[[], str],
) -> None:
    client, data = await serve(aiohttp_client, make_settings, database_factory)
    for user in data.users:
        headers = await sign_in(client, user)
        token = headers["Authorization"].removeprefix("Bearer ")
        assert await (await me_with(client, token)).json() == {
            "name": user.name,
            "email": user.email,
        }
    grace = data.users[1]
    lower = {"email": grace.email.lower(), "password": grace.password, **TOKENS}
    assert (await client.post(LOGIN, json=lower)).status == 200
    wrong = {"email": grace.email, "password": "not her password", **TOKENS}
    assert (await client.post(LOGIN, json=wrong)).status == 401


async def test_the_reference_journals_read_page_by_page(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    database_factory: Callable[[], str],
) -> None:
    client, data = await serve(aiohttp_client, make_settings, database_factory)
    ada, grace = data.users[0], data.users[1]
    headers = await sign_in(client, ada)
    entries = await get(client, headers, "/api/journal")
    assert [(e["reference"], e["message_count"]) for e in entries] == [
        (data.today, 2),
        ("2025/01/19", 4),
        ("2025/01/14", 4),
    ]
    racing = data.journal(ada, "2025/01/19")
    response = await client.get(
        "/api/journal/2025/01/19/messages", headers=headers, params={"limit": "3"}
    )
    page = await response.json()
    assert [(m["sequence"], m["content"]) for m in page] == [
        (4, racing[3].content),
        (3, racing[2].content),
        (2, racing[1].content),
    ]
    rest = await get(
        client,
        headers,
        "/api/journal/2025/01/19/messages",
        cursor=response.headers["X-Next-Cursor"],
    )
    assert [(m["id"], m["sequence"]) for m in rest] == [(str(racing[0].id), 1)]
    plan = (await get(client, headers, "/api/journal/2025/01/14/messages"))[2]
    assert (plan["sequence"], plan["metadata"]) == (2, {})
    assert [call["title"] for call in plan["tool_calls"]] == ["Web search", "Web fetch"]
    hits = await get(client, headers, "/api/journal/search", q="naps")
    assert [hit["reference"] for hit in hits] == ["2025/01/19"]

    theirs = await sign_in(client, grace)
    assert (await client.get("/api/journal/2025/01/14", headers=theirs)).status == 404
    assert [e["reference"] for e in await get(client, theirs, "/api/journal")] == ["2025/02/17"]


async def test_a_new_turn_is_appended_after_the_reference_messages(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    database_factory: Callable[[], str],
) -> None:
    client, data = await serve(
        aiohttp_client, make_settings, database_factory, settings={"main_agent_use_mock": True}
    )
    ada = data.users[0]
    headers = await sign_in(client, ada)
    body = {"message": "What did I say this morning?", "client_message_id": str(uuid.uuid4())}
    response = await client.post("/api/chat/message", json=body, headers=headers)
    assert response.status == 200, await response.text()
    stream = await client.get(
        f"/api/chat/stream/{(await response.json())['stream_id']}", headers=headers
    )
    assert "event: done" in await stream.text()

    async def both_stored() -> list[Any]:
        page: list[Any] = await get(client, headers, "/api/journal/today/messages")
        return page if len(page) == 4 else []

    page = await eventually(both_stored)
    morning = data.journal(ada, data.today)
    assert [(m["sequence"], m["role"]) for m in page] == [
        (4, "assistant"),
        (3, "user"),
        (2, "assistant"),
        (1, "user"),
    ]
    assert page[1]["content"] == body["message"]
    assert [m["id"] for m in page[2:]] == [str(morning[1].id), str(morning[0].id)]
    journal = await get(client, headers, "/api/journal/today")
    assert journal["message_count"] == 4


async def test_a_knowledge_update_skips_what_the_reference_committed(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    database_factory: Callable[[], str],
    stream: JobsStream,
) -> None:
    client, data = await serve(
        aiohttp_client,
        make_settings,
        database_factory,
        settings={"job_orchestrator_in_process": True, **stream.settings},
    )
    ada, grace = data.users[0], data.users[1]
    headers = await sign_in(client, ada)
    response = await client.post("/api/knowledge/update", json={}, headers=headers)
    assert response.status == 200, await response.text()
    assert (await response.json())["status"] == "queued"
    published = await stream.published()
    carried = {
        (job.envelope["payload"]["journal_reference"], message["sequence"], message["content"])
        for job in published
        for message in job.envelope["payload"]["messages"]
    }
    uncommitted = [m for m in data.messages if m.user == ada and not m.committed]
    assert carried == {
        (m.reference, data.journal(ada, m.reference).index(m) + 1, m.content) for m in uncommitted
    }
    assert ("2025/01/14", 3, "Mostly Spanish vocabulary.") in carried  # between committed ones

    theirs = await sign_in(client, grace)
    response = await client.post("/api/knowledge/update", json={}, headers=theirs)
    assert (await response.json())["status"] == "nothing_to_update"


async def test_the_reference_user_configs_are_served(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    database_factory: Callable[[], str],
) -> None:
    client, data = await serve(aiohttp_client, make_settings, database_factory, configs=True)
    ada, grace = await asyncio.gather(*(sign_in(client, user) for user in data.users[:2]))
    values = {
        config["key"]: (config["value"], config["using_default"])
        for config in (await get(client, ada, "/api/users/me/configs"))["configs"]
    }
    assert values == {
        "frontend.theme": ("purple-intelligence", False),
        "journal.compact": (False, True),
    }
    update = {"update": {"key": "journal.compact", "value": True}}
    response = await client.patch("/api/users/me/configs", json=update, headers=grace)
    assert response.status == 200
    stored = await client.app[PG_POOL].fetchval(
        "SELECT v.value FROM user_config_values v JOIN user_config_definitions d"
        " ON d.id = v.definition_id WHERE v.user_id = $1",
        data.users[1].id,
    )
    assert stored == {"kind": "boolean", "value": True}
