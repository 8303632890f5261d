"""``/api/knowledge/update/{job_id}[/watch]``: a job's state, now and as workers move it on."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from auth_support import AiohttpClient
from knowledge_support import Client, Event, collect, sign_in
from orchestrator.support import JobsStream, jobs_stream
from worker.handlers import flaky
from worker.support import running_worker

from exobrain.config import Settings
from exobrain.http import create_app
from exobrain.http.resources import PG_POOL


@pytest.fixture
async def stream(nats_url: str, namespace: str) -> AsyncIterator[JobsStream]:
    async with jobs_stream(nats_url, namespace) as created:
        yield created


@pytest.fixture
def jobs_settings(
    make_settings: Callable[..., Settings], database_factory: Callable[[], str], stream: JobsStream
) -> Settings:
    return make_settings(
        assistant_db_dsn=database_factory(),
        job_orchestrator_in_process=True,
        job_worker_backoff_seconds=0.05,
        job_watch_recheck_seconds=0.2,
        **stream.settings,
    )


def states(events: list[Event]) -> list[tuple[str, str, int] | str]:
    return [
        (name, data["state"], data["attempt"]) if name == "status" else name
        for name, data in events
    ]


async def test_a_job_reads_enqueued_until_a_worker_takes_it_and_only_its_user_sees_it(
    aiohttp_client: AiohttpClient, jobs_settings: Settings
) -> None:
    client: Client = await aiohttp_client(create_app(jobs_settings))
    owner, stranger = await sign_in(client), await sign_in(client)
    job_id = await owner.job()
    status, body = await owner.state(job_id)
    assert status == 200
    assert body.pop("created_at") <= body.pop("emitted_at")
    assert body == {
        "job_id": job_id,
        "job_type": "knowledge.update",
        "state": "ENQUEUED_OR_PENDING",
        "attempt": 0,
        "detail": None,
        "terminal": False,
        "started_at": None,
        "finished_at": None,
    }
    assert (await stranger.state(job_id))[0] == 404
    assert (await owner.state(str(uuid.uuid4())))[0] == 404
    status, body = await owner.state("not-a-uuid")
    assert status == 422
    assert body["detail"][0]["loc"] == ["path", "job_id"]
    for who, what in ((stranger, job_id), (owner, str(uuid.uuid4()))):
        url = f"/api/knowledge/update/{what}/watch"
        response = await client.get(url, headers=who.headers)
        assert response.status == 404
        assert await response.json() == {"detail": "job not found"}
    assert (await client.get(f"/api/knowledge/update/{job_id}")).status == 401


async def test_a_watch_follows_every_transition_then_ends_with_one_done(
    aiohttp_client: AiohttpClient, jobs_settings: Settings
) -> None:
    client: Client = await aiohttp_client(create_app(jobs_settings))
    user = await sign_in(client)
    job_id = await user.job()
    events = user.watch(job_id)
    first = await anext(events)
    assert first[0] == "status"
    assert first[1]["state"] == "ENQUEUED_OR_PENDING"
    async with running_worker(jobs_settings, {"knowledge.update": flaky}):
        rest = await asyncio.wait_for(collect(events), timeout=30)
    assert states([first, *rest]) == [
        ("status", "ENQUEUED_OR_PENDING", 0),
        ("status", "STARTED", 1),
        ("status", "RETRYING", 1),
        ("status", "STARTED", 2),
        ("status", "SUCCEEDED", 2),
        "done",
    ]
    assert rest[1][1]["detail"] == "RuntimeError: the first attempt fails"
    assert rest[-2][1] == rest[-2][1] | {"job_id": job_id, "terminal": True}
    assert rest[-1][1] == {"job_id": job_id, "state": "SUCCEEDED"}

    # Finished: the terminal state at once, then done.
    again = await asyncio.wait_for(collect(user.watch(job_id)), timeout=10)
    assert states(again) == [("status", "SUCCEEDED", 2), "done"]
    status, body = await user.state(job_id)
    assert (status, body["state"], body["detail"]) == (200, "SUCCEEDED", "done on attempt 2")
    assert body["created_at"] <= body["started_at"] <= body["finished_at"]


async def test_a_watch_that_missed_an_event_reads_the_row_again(
    aiohttp_client: AiohttpClient, jobs_settings: Settings
) -> None:
    client: Client = await aiohttp_client(create_app(jobs_settings))
    user = await sign_in(client)
    job_id = await user.job()
    events = user.watch(job_id)
    assert (await anext(events))[1]["state"] == "ENQUEUED_OR_PENDING"
    await client.app[PG_POOL].execute(  # a transition whose event never came
        "UPDATE jobs SET state = 'FAILED_FINAL', attempt = 1, detail = 'lost',"
        " version = version + 1 WHERE id = $1",
        uuid.UUID(job_id),
    )
    rest = await asyncio.wait_for(collect(events), timeout=10)
    assert states(rest) == [("status", "FAILED_FINAL", 1), "done"]
    assert rest[0][1]["detail"] == "lost"


async def test_the_in_process_worker_runs_jobs_of_the_service(
    aiohttp_client: AiohttpClient, jobs_settings: Settings
) -> None:
    settings = jobs_settings.model_copy(
        update={
            "job_worker_in_process": True,
            "job_worker_handlers": {"knowledge.update": "worker.handlers:flaky"},
        }
    )
    client: Client = await aiohttp_client(create_app(settings))
    user = await sign_in(client)
    job_id = await user.job()
    events = await asyncio.wait_for(collect(user.watch(job_id)), timeout=30)
    assert states(events)[-2:] == [("status", "SUCCEEDED", 2), "done"]
