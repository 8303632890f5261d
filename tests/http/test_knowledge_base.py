"""``knowledge.update`` end to end: messages, an update, the in-process worker, Qdrant."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import nats
import orjson
import pytest
from auth_support import AiohttpClient
from knowledge_support import Client, User, collect, sign_in
from orchestrator.support import JobsStream, eventually, jobs_stream
from qdrant_client import models

from exobrain.config import Settings
from exobrain.http import create_app
from exobrain.http.resources import PG_POOL, QDRANT
from exobrain.knowledge import Passage

DAY = "2026/12/01"
LONG = "a long reflection on the garden, " * 40  # more than a 200-token job: cut into parts


@pytest.fixture
async def stream(nats_url: str, namespace: str) -> AsyncIterator[JobsStream]:
    async with jobs_stream(nats_url, namespace) as created:
        yield created


@pytest.fixture
def settings(
    make_settings: Callable[..., Settings], database_factory: Callable[[], str], stream: JobsStream
) -> Settings:
    return make_settings(
        assistant_db_dsn=database_factory(),
        job_orchestrator_in_process=True,
        job_worker_in_process=True,
        knowledge_update_max_tokens=200,
        knowledge_collection="passages",
        **stream.settings,
    )


async def stored(user: User) -> list[tuple[str, dict[str, Any]]]:
    """The user's points: id and payload, in journal order."""
    qdrant = user.client.app[QDRANT].client()  # opened: the worker stored the passages
    points, _ = await qdrant.scroll(
        "passages",
        scroll_filter=models.Filter(
            must=[
                models.FieldCondition(
                    key="user_id", match=models.MatchValue(value=str(user.user_id))
                )
            ]
        ),
        limit=1000,
        with_payload=True,
    )
    found = [(str(point.id), point.payload or {}) for point in points]
    return sorted(found, key=lambda item: (item[1]["sequence"], item[1]["part"]))


async def finished(user: User, job_ids: list[str]) -> list[str]:
    """Watch every job to its end: their terminal states."""
    states = []
    for job_id in job_ids:
        events = await asyncio.wait_for(collect(user.watch(job_id)), timeout=60)
        assert events[-1][0] == "done"
        states.append(events[-1][1]["state"])
    return states


async def test_every_message_becomes_one_passage_and_a_rerun_overwrites_them(
    aiohttp_client: AiohttpClient, settings: Settings, stream: JobsStream
) -> None:
    client: Client = await aiohttp_client(create_app(settings))
    user = await sign_in(client)
    await user.write(DAY, "I planted tomatoes", "The basil needs sun", LONG)
    job_ids = await user.update()
    assert len(job_ids) > 2  # the long message went in parts, a job each
    assert await finished(user, job_ids) == ["SUCCEEDED"] * len(job_ids)

    points = await stored(user)
    payloads = [payload for _, payload in points]
    assert [(p["sequence"], p["part"], p["role"]) for p in payloads[:2]] == [
        (1, 0, "user"),
        (2, 0, "user"),
    ]
    assert [p["text"] for p in payloads[:2]] == ["I planted tomatoes", "The basil needs sun"]
    parts = payloads[2:]
    assert [p["part"] for p in parts] == list(range(1, len(job_ids)))
    assert "".join(p["text"] for p in parts) == LONG
    for point_id, payload in points:
        assert payload["journal_reference"] == DAY
        assert payload["user_id"] == str(user.user_id)
        assert payload["created_at"].endswith("Z")
        assert point_id == Passage(**payload).point_id

    # Run every job again, as a redelivery would: the points are overwritten, not added.
    await client.app[PG_POOL].execute(
        "UPDATE jobs SET state = 'RETRYING' WHERE id = ANY($1::uuid[])",
        [uuid.UUID(job_id) for job_id in job_ids],
    )
    connection = await nats.connect(stream.nats_url)
    try:
        for published in await stream.published():
            if not published.subject.endswith(".requested"):
                continue  # the stream keeps the status events too
            await connection.jetstream().publish(
                published.subject, orjson.dumps(published.envelope)
            )
    finally:
        await connection.close()

    async def ran_again() -> bool:
        rows = await client.app[PG_POOL].fetch(
            "SELECT state FROM jobs WHERE id = ANY($1::uuid[])",
            [uuid.UUID(job_id) for job_id in job_ids],
        )
        return [row["state"] for row in rows] == ["SUCCEEDED"] * len(job_ids)

    assert await eventually(ran_again, timeout=60)
    assert await stored(user) == points
