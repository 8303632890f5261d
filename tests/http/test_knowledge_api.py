"""``/api/knowledge`` end to end: HTTP → dispatch actor → gRPC orchestrator → JetStream.

Each test has a database of its own (no other test's actor may resume its
outbox rows) and a JetStream stream of its own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from auth_support import AiohttpClient, create_account, login_tokens
from knowledge_support import Writer
from orchestrator.support import JobsStream, Published, eventually, jobs_stream, orchestrator

from exobrain.config import Settings
from exobrain.http import create_app
from exobrain.http.resources import PG_POOL
from exobrain.jobs import job_id_for

Client = TestClient[web.Request, web.Application]
UPDATE = "/api/knowledge/update"
DAYS = ("2026/11/23", "2026/11/24")


@pytest.fixture
async def stream(nats_url: str, namespace: str) -> AsyncIterator[JobsStream]:
    async with jobs_stream(nats_url, namespace) as created:
        yield created


@pytest.fixture
def knowledge_settings(
    make_settings: Callable[..., Settings],
    database_factory: Callable[[], str],
    stream: JobsStream,
) -> Callable[..., Settings]:
    database = database_factory()

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "assistant_db_dsn": database,
            "job_orchestrator_in_process": True,
            "knowledge_update_max_tokens": 200,
            "knowledge_dispatch_resume_interval_seconds": 0.1,
            **stream.settings,
        }
        return make_settings(**(values | overrides))

    return make


class User(Writer):
    async def update(self, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        response = await self.client.post(UPDATE, json=body or {}, headers=self.headers)
        return response.status, await response.json()

    async def rows(self) -> list[dict[str, Any]]:
        rows = await self.client.app[PG_POOL].fetch(
            "SELECT id, journal_reference, part, status, job_id, message_ids,"
            " payload::json AS payload FROM knowledge_dispatches"
            " WHERE user_id = $1 ORDER BY created_at, position",
            self.user_id,
        )
        return [dict(row) for row in rows]


async def sign_in(aiohttp_client: AiohttpClient, settings: Settings) -> User:
    client: Client = await aiohttp_client(create_app(settings))
    account = await create_account(client)
    tokens = await login_tokens(client, account)
    return User(client, {"Authorization": f"Bearer {tokens['access_token']}"}, account.user_id)


async def another_user(user: User) -> User:
    """A second account signed in on ``user``'s app."""
    account = await create_account(user.client)
    tokens = await login_tokens(user.client, account)
    return User(user.client, {"Authorization": f"Bearer {tokens['access_token']}"}, account.user_id)


async def as_user(aiohttp_client: AiohttpClient, settings: Settings, user: User) -> User:
    """The same user on another app (another process) over the same database."""
    state = settings.exobrain_state_dir.with_name(f"state-{uuid.uuid4().hex[:8]}")
    client: Client = await aiohttp_client(
        create_app(settings.model_copy(update={"exobrain_state_dir": state}))
    )
    return User(client, user.headers, user.user_id)


def write_days(user: User) -> list[asyncio.Future[None]]:
    long = "a long reflection, " * 80  # larger than a 200-token job: split into parts
    return [
        asyncio.ensure_future(user.write(day, *(f"{day} note {n} " * 12 for n in range(5)), long))
        for day in DAYS
    ]


def by_key(published: list[Published]) -> dict[str, Published]:
    keys = [p.msg_id for p in published]
    assert len(keys) == len(set(keys)), "a job reached the stream twice"
    return {str(p.msg_id): p for p in published}


async def selected(user: User) -> list[tuple[str, int, str]]:
    rows = await user.client.app[PG_POOL].fetch(
        "SELECT c.reference, m.sequence, m.content FROM messages m"
        " JOIN conversations c ON c.id = m.conversation_id WHERE m.user_id = $1"
        " ORDER BY c.reference, m.sequence",
        user.user_id,
    )
    return [(row["reference"], row["sequence"], row["content"]) for row in rows]


def carried(published: list[Published]) -> list[tuple[str, int, str]]:
    """The messages the jobs carry, in stream order per journal, parts joined back."""
    found: list[tuple[str, int, str]] = []
    for job in sorted(published, key=lambda job: job.envelope["payload"]["journal_reference"]):
        payload = job.envelope["payload"]
        for message in payload["messages"]:
            key = (payload["journal_reference"], message["sequence"])
            if found and found[-1][:2] == key:
                found[-1] = (*key, found[-1][2] + message["content"])
            else:
                found.append((*key, message["content"]))
    return found


async def assert_published_once(stream: JobsStream, rows: list[dict[str, Any]], user: User) -> None:
    """Every outbox row reached the stream once, and the jobs carry exactly the user's messages."""
    jobs = by_key(await stream.published())
    assert set(jobs) == {str(row["id"]) for row in rows}
    assert carried(list(jobs.values())) == await selected(user)


async def test_jobs_in_the_stream_carry_exactly_the_selected_messages(
    aiohttp_client: AiohttpClient,
    knowledge_settings: Callable[..., Settings],
    stream: JobsStream,
) -> None:
    user = await sign_in(aiohttp_client, knowledge_settings())
    await asyncio.gather(*write_days(user))
    status, body = await user.update()
    assert status == 200, body
    rows = await user.rows()
    assert body == {"job_id": rows[0]["job_id"], "status": "queued", "job_ids": body["job_ids"]}
    assert sorted(body["job_ids"]) == sorted(row["job_id"] for row in rows)
    published = await stream.published()
    jobs = by_key(published)
    assert set(jobs) == {str(row["id"]) for row in rows}
    for row in rows:
        envelope = jobs[str(row["id"])].envelope
        assert envelope["job_id"] == row["job_id"] == job_id_for(str(row["id"]))
        assert envelope["correlation_id"] == str(user.user_id)
        assert envelope["payload"] == row["payload"]
    for day in DAYS:  # each journal's jobs reach the stream in the order they were cut
        in_stream = [
            p.msg_id for p in published if p.envelope["payload"]["journal_reference"] == day
        ]
        assert in_stream == [str(r["id"]) for r in rows if r["journal_reference"] == day]
    assert carried(published) == await selected(user)

    assert await user.update() == (
        200,
        {"job_id": "", "status": "nothing_to_update", "job_ids": []},
    )
    listed = await user.client.get("/api/knowledge/updates", headers=user.headers)
    updates = (await listed.json())["updates"]
    assert {u["job_id"] for u in updates} == {row["job_id"] for row in rows}
    assert sum(u["message_count"] for u in updates if u["part"] <= 1) == 12


async def test_one_journal_only_and_a_malformed_reference_is_422(
    aiohttp_client: AiohttpClient,
    knowledge_settings: Callable[..., Settings],
    stream: JobsStream,
) -> None:
    user = await sign_in(aiohttp_client, knowledge_settings())
    await asyncio.gather(*write_days(user))
    status, body = await user.update({"journal_reference": "2026-11-24"})
    assert status == 422
    assert body["detail"][0]["loc"] == ["body", "journal_reference"]
    assert (await user.update({"journal_reference": DAYS[1]}))[0] == 200
    assert {p.envelope["payload"]["journal_reference"] for p in await stream.published()} == {
        DAYS[1]
    }
    assert {row["journal_reference"] for row in await user.rows()} == {DAYS[1]}
    anonymous = await user.client.post(UPDATE, json={})
    assert anonymous.status == 401


def queued(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The answer to an update whose jobs are these rows'."""
    job_ids = [job_id_for(str(row["id"])) for row in rows]
    return {"job_id": job_ids[0], "status": "queued", "job_ids": job_ids}


async def test_an_unreachable_orchestrator_answers_202_and_delivers_once_it_is_back(
    aiohttp_client: AiohttpClient,
    knowledge_settings: Callable[..., Settings],
    stream: JobsStream,
    down_address: str,
) -> None:
    address = down_address
    settings = knowledge_settings(
        job_orchestrator_in_process=False,
        job_orchestrator_grpc_target=address,
        job_orchestrator_connect_timeout_seconds=0.5,
    )
    user = await sign_in(aiohttp_client, settings)
    await asyncio.gather(*write_days(user))
    status, body = await user.update()
    rows = await user.rows()
    assert (status, body) == (202, queued(rows))
    assert {row["status"] for row in rows} == {"pending"}
    ready = await user.client.get("/readyz")
    assert (await ready.json())["checks"]["orchestrator"]["status"] == "error"

    async with orchestrator(settings, address):

        async def delivered() -> bool:
            return {row["status"] for row in await user.rows()} == {"enqueued"}

        assert await eventually(delivered)
        ready = await user.client.get("/readyz")
        assert (await ready.json())["checks"]["orchestrator"]["status"] == "ok"
    await assert_published_once(stream, rows, user)
    assert [row["job_id"] for row in await user.rows()] == body["job_ids"]


async def test_updates_while_the_orchestrator_is_down_are_answered_at_once(
    aiohttp_client: AiohttpClient,
    knowledge_settings: Callable[..., Settings],
    stream: JobsStream,
    down_address: str,
) -> None:
    """No update waits behind another's enqueue: each answers 202 with its jobs' ids after the
    default wait, though the orchestrator's deadline is longer than this test may run; the
    jobs can be watched meanwhile, and are enqueued, once each, when it is back."""
    address = down_address
    settings = knowledge_settings(
        job_orchestrator_in_process=False,
        job_orchestrator_grpc_target=address,
        job_orchestrator_connect_timeout_seconds=300,
        knowledge_update_wait_seconds=Settings.model_fields[
            "knowledge_update_wait_seconds"
        ].default,
    )
    first = await sign_in(aiohttp_client, settings)
    users = [first, *[await another_user(first) for _ in range(4)]]
    await asyncio.gather(*(write for user in users for write in write_days(user)))

    answers = await asyncio.gather(*(user.update() for user in users))
    rows = {user.user_id: await user.rows() for user in users}
    assert answers == [(202, queued(rows[user.user_id])) for user in users]
    every = [row for mine in rows.values() for row in mine]
    attempts = await first.client.app[PG_POOL].fetch(
        "SELECT attempts FROM knowledge_dispatches WHERE id = ANY($1::uuid[])",
        [row["id"] for row in every],
    )
    assert {row["attempts"] for row in attempts} == {0}  # no enqueue has ended yet
    for user, (_, body) in zip(users, answers, strict=True):
        job = await user.client.get(f"/api/knowledge/update/{body['job_id']}", headers=user.headers)
        assert (await job.json())["state"] == "ENQUEUED_OR_PENDING"

    async with orchestrator(settings, address):

        async def delivered() -> bool:
            statuses = {row["status"] for user in users for row in await user.rows()}
            return statuses == {"enqueued"}

        assert await eventually(delivered)
    jobs = by_key(await stream.published())
    assert set(jobs) == {str(row["id"]) for row in every}
    for user in users:
        mine = [jobs[str(row["id"])] for row in rows[user.user_id]]
        assert carried(mine) == await selected(user)


async def test_concurrent_updates_dispatch_each_message_once(
    aiohttp_client: AiohttpClient,
    knowledge_settings: Callable[..., Settings],
    stream: JobsStream,
) -> None:
    settings = knowledge_settings()
    user = await sign_in(aiohttp_client, settings)
    other_process = await as_user(aiohttp_client, settings, user)
    await asyncio.gather(*write_days(user))
    answers = await asyncio.gather(*(u.update() for u in (user, other_process) * 4))
    assert {status for status, _ in answers} == {200}
    assert sorted(body["status"] for _, body in answers).count("queued") >= 1
    job_ids = [job_id for _, body in answers for job_id in body["job_ids"]]
    assert len(job_ids) == len(set(job_ids))
    rows = await user.rows()
    firsts = Counter(i for row in rows if row["part"] <= 1 for i in row["message_ids"])
    assert set(firsts.values()) == {1}  # a whole message or a first part: once in total
    assert len(firsts) == 12
    await assert_published_once(stream, rows, user)


async def test_the_legacy_path_publishes_the_same_envelopes(
    aiohttp_client: AiohttpClient,
    knowledge_settings: Callable[..., Settings],
    stream: JobsStream,
) -> None:
    legacy = await sign_in(
        aiohttp_client, knowledge_settings(knowledge_update_use_orchestrator_enqueue=False)
    )
    readiness = await (await legacy.client.get("/readyz")).json()
    assert "orchestrator" not in readiness["checks"]
    await asyncio.gather(*write_days(legacy))
    assert (await legacy.update())[0] == 200
    direct = await stream.published()
    await legacy.client.app[PG_POOL].execute(  # every message uncommitted again
        "DELETE FROM knowledge_watermarks"
        " WHERE conversation_id IN (SELECT id FROM conversations WHERE user_id = $1)",
        legacy.user_id,
    )
    through_grpc = await as_user(aiohttp_client, knowledge_settings(), legacy)
    assert (await through_grpc.update())[0] == 200
    orchestrated = (await stream.published())[len(direct) :]

    def comparable(job: Published) -> dict[str, Any]:
        """All but created_at and job_id: the job id derives from the outbox row, a new one."""
        assert job.envelope["job_id"] == job_id_for(str(job.msg_id))
        return {k: v for k, v in job.envelope.items() if k not in {"created_at", "job_id"}}

    assert len(direct) == len(orchestrated) > 1

    def in_journal_order(jobs: list[Published]) -> list[dict[str, Any]]:
        """Each journal's jobs keep their order; journals are enqueued in parallel."""
        return sorted(map(comparable, jobs), key=lambda job: job["payload"]["journal_reference"])

    assert in_journal_order(direct) == in_journal_order(orchestrated)
    assert {job.subject for job in direct + orchestrated} == {
        f"{stream.prefix}.knowledge.update.requested"
    }
