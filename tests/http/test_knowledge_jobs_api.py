"""A job's state, now and as workers move it on: ``/api/knowledge/update/{job_id}[/watch]``,
and ``job.status`` frames on every WebSocket of its user, on any instance (checked against
their documented model)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import aiohttp
import nats
import pytest
from auth_support import AiohttpClient
from knowledge_support import Client, Event, User, collect, sign_in
from orchestrator.support import JobsStream, jobs_stream
from test_asyncapi import check
from test_chat_socket import close_code_of, connect, frame, unread_socket
from worker.handlers import flaky
from worker.support import running_worker

from exobrain.config import Settings
from exobrain.http import create_app
from exobrain.http.resources import PG_POOL
from exobrain.jobs.lifecycle import JobState, JobStatus, status_subject

Frames = dict[str, list[tuple[str, int]]]

#: What a job of the ``flaky`` handler goes through, as (state, attempt).
FLAKY = [("STARTED", 1), ("RETRYING", 1), ("STARTED", 2), ("SUCCEEDED", 2)]


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


# The user's WebSockets ----------------------------------------------------------------------------


async def instance(aiohttp_client: AiohttpClient, settings: Settings, n: int) -> Client:
    """Instance ``n`` of one deployment (a Qdrant local-mode directory of its own)."""
    state = settings.exobrain_state_dir / str(n)
    client: Client = await aiohttp_client(
        create_app(settings.model_copy(update={"exobrain_state_dir": state}))
    )
    return client


async def attached(client: Client, user: User) -> aiohttp.ClientWebSocketResponse:
    """A socket of ``user``, attached: the pong comes after the socket joined its user's."""
    ws = await connect(client, user.headers)
    await ws.send_json({"type": "ping"})
    assert await frame(ws) == {"type": "pong"}
    return ws


async def job_frames(ws: aiohttp.ClientWebSocketResponse, job_ids: list[str]) -> Frames:
    """Each job's ``job.status`` frames as (state, attempt), until all of ``job_ids`` ended;
    the jobs of any other id the socket heard meanwhile too."""
    heard: Frames = {job_id: [] for job_id in job_ids}
    ended: set[str] = set()
    while not ended >= set(job_ids):
        received = await frame(ws, timeout=30)
        check(received)
        if received["type"] == "job.status":
            heard.setdefault(received["job_id"], []).append(
                (received["state"], received["attempt"])
            )
            if received["terminal"]:
                ended.add(received["job_id"])
    return heard


async def test_every_socket_of_the_user_hears_its_jobs_on_every_instance(
    aiohttp_client: AiohttpClient, jobs_settings: Settings
) -> None:
    a = await instance(aiohttp_client, jobs_settings, 0)
    b = await instance(aiohttp_client, jobs_settings, 1)
    user, stranger = await sign_in(a), await sign_in(a)
    sockets = [await attached(a, user), await attached(a, user), await attached(b, user)]
    strangers = await attached(b, stranger)
    await user.write("2026/12/01", "tomatoes need sun")
    await user.write("2026/12/02", "basil too")
    await stranger.write("2026/12/01", "a secret of another user")
    job_ids, foreign = await user.update(), await stranger.update()
    assert len(job_ids) == 2
    async with running_worker(jobs_settings, {"knowledge.update": flaky}):
        for ws in sockets:
            assert await job_frames(ws, job_ids) == dict.fromkeys(job_ids, FLAKY)
        assert await job_frames(strangers, foreign) == dict.fromkeys(foreign, FLAKY)


async def test_a_socket_never_hears_an_older_state_after_a_newer_one(
    aiohttp_client: AiohttpClient, jobs_settings: Settings
) -> None:
    """Statuses published as a worker does, out of order, repeated, malformed: each job's
    frames go forward only, and only its user's sockets get them."""
    client = await instance(aiohttp_client, jobs_settings, 0)
    user, stranger = await sign_in(client), await sign_in(client)
    ws = await attached(client, user)
    job_id = str(uuid.uuid4())
    publisher = await nats.connect(str(jobs_settings.exobrain_nats_url))
    subject = status_subject(jobs_settings.job_subject_prefix, job_id)

    async def publish(version: int, state: JobState, attempt: int, of: User = user) -> None:
        status = JobStatus(
            job_id, "knowledge.update", str(of.user_id), state, attempt, None, version,
            datetime.now(UTC),
        )  # fmt: skip
        await publisher.publish(subject, status.encode())

    try:
        await publish(2, JobState.STARTED, 1)
        await publish(3, JobState.RETRYING, 1)
        await publish(1, JobState.ENQUEUED_OR_PENDING, 0)  # late
        await publisher.publish(subject, b"not a status")
        await publish(3, JobState.RETRYING, 1)  # again
        await publish(9, JobState.FAILED_FINAL, 9, of=stranger)  # the same id, another user
        await publish(4, JobState.STARTED, 2)
        await publish(5, JobState.SUCCEEDED, 2)
        await publish(4, JobState.STARTED, 2)  # after the terminal one
        await publish(6, JobState.SUCCEEDED, 2)  # a newer one still comes
    finally:
        await publisher.close()
    assert await job_frames(ws, [job_id]) == {job_id: FLAKY}
    terminal = await frame(ws)
    check(terminal)
    assert (terminal["job_id"], terminal["state"], terminal["detail"]) == (
        job_id,
        "SUCCEEDED",
        None,
    )
    await ws.send_json({"type": "ping"})
    assert await frame(ws) == {"type": "pong"}


async def test_a_socket_that_reads_no_job_statuses_is_closed_with_4008(
    aiohttp_client: AiohttpClient, jobs_settings: Settings
) -> None:
    """The statuses go through the socket's bounded inbox like every other frame."""
    settings = jobs_settings.model_copy(
        update={"chat_ws_outbox_max_bytes": 4096, "chat_ws_write_timeout_seconds": 600}
    )
    client = await instance(aiohttp_client, settings, 0)
    user = await sign_in(client)
    slow = await unread_socket(client, user.headers)
    publisher = await nats.connect(str(settings.exobrain_nats_url))
    try:
        for n in range(20_000):  # ~5 MB of frames: more than any kernel buffers on loopback
            job_id = str(uuid.uuid4())
            status = JobStatus(
                job_id, "knowledge.update", str(user.user_id), JobState.STARTED, 1, "x" * 100,
                n + 1, datetime.now(UTC),
            )  # fmt: skip
            await publisher.publish(
                status_subject(settings.job_subject_prefix, job_id), status.encode()
            )
    finally:
        await publisher.close()
    assert await close_code_of(slow) == 4008
