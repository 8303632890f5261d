"""The KnowledgeDispatchActor against real PostgreSQL, a real orchestrator and JetStream.

Crashes are injected at the two seams of the outbox protocol through the
actor's ``enqueue`` dependency: before a job is enqueued, and after it was
enqueued but before the outbox recorded it. The "process" then dies (its
actor system stops) and a new one, on the same database and stream, must get
every chunk into the stream exactly once. Messages appended while an update
runs, dispatches racing for one selection and messages committed before
journals had watermarks must not be dispatched twice, nor skipped.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import asyncpg
import pytest
from orchestrator.support import JobsStream, eventually, jobs_stream, orchestrator

from exobrain.actors.journal import AppendMessages, NewMessage
from exobrain.actors.journal.store import write_batch
from exobrain.actors.knowledge import (
    KnowledgeDispatchActor,
    RequestUpdate,
    chunk,
    enqueue,
    estimate_tokens,
    request_update,
)
from exobrain.actors.knowledge import store as knowledge_store
from exobrain.actors.knowledge.messages import ResumePending
from exobrain.config import Settings
from exobrain.jobs import (
    EnqueueBatch,
    Enqueued,
    EnqueueUnavailable,
    InvalidJob,
    job_id_for,
    one_at_a_time,
)
from exobrain.orchestrator import OrchestratorClient
from exobrain.proto import job_orchestrator_pb2 as pb
from exobrain.store import available_migrations, create_pool, migrate
from exobrain.supervision import ActorSystem, ChildSpec, Intensity, run_on_loop

REFERENCE = "2026/11/24"
#: Small enough that a few messages make several chunks.
BUDGET = 150


class Crash(RuntimeError):
    """Stands for the process dying at a seam."""


@pytest.fixture
async def stream(nats_url: str, namespace: str) -> AsyncIterator[JobsStream]:
    async with jobs_stream(nats_url, namespace) as created:
        yield created


@pytest.fixture
async def settings(
    make_settings: Callable[..., Settings],
    database_factory: Callable[[], str],
    stream: JobsStream,
) -> Settings:
    """A database of the test's own: no other test's actor may resume its outbox rows."""
    return make_settings(assistant_db_dsn=database_factory(), **stream.settings)


@pytest.fixture
async def pool(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    await migrate(str(settings.assistant_db_dsn))
    created = await create_pool(settings)
    yield created
    await created.close()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[OrchestratorClient]:
    async with orchestrator(settings) as running:
        target = OrchestratorClient(f"127.0.0.1:{running.port}", deadline=5.0)
        yield target
        await target.close()


async def start(pool: asyncpg.Pool, enqueue: EnqueueBatch, **options: Any) -> ActorSystem:
    loop = asyncio.get_running_loop()
    spec = ChildSpec(
        "knowledge",
        lambda supervision: KnowledgeDispatchActor.start(
            supervision,
            pool=pool,
            loop=loop,
            enqueue=enqueue,
            max_tokens=options.get("max_tokens", BUDGET),
            enqueue_timeout=5.0,
            resume_interval=options.get("resume_interval", 60.0),
            estimate=options.get("estimate", estimate_tokens),
        ),
    )
    return await asyncio.to_thread(ActorSystem, [spec], intensity=Intensity())


async def stop(system: ActorSystem) -> None:
    await asyncio.to_thread(system.stop, 5)


async def journal(pool: asyncpg.Pool, count: int, reference: str = REFERENCE) -> uuid.UUID:
    user_id: uuid.UUID = await pool.fetchval(
        "INSERT INTO users (email, name) VALUES ($1, 'Dispatch') RETURNING id",
        f"{uuid.uuid4()}@knowledge.test",
    )
    await append(pool, user_id, count, reference)
    return user_id


async def append(
    pool: asyncpg.Pool, user_id: uuid.UUID, count: int, reference: str = REFERENCE
) -> None:
    messages = tuple(
        NewMessage("user" if n % 2 else "assistant", f"message {n} " + "words " * 30)
        for n in range(1, count + 1)
    )
    [outcome] = await write_batch(pool, [AppendMessages(user_id, reference, messages)])
    assert not isinstance(outcome, Exception)


async def dispatched_sequences(pool: asyncpg.Pool) -> list[int]:
    """The sequences the outbox rows carry, in outbox order (a part counts once)."""
    sequences = [m["sequence"] for row in await outbox(pool) for m in row["payload"]["messages"]]
    return list(dict.fromkeys(sequences))


async def watermark(pool: asyncpg.Pool, user_id: uuid.UUID) -> int | None:
    through: int | None = await pool.fetchval(
        "SELECT k.committed_through FROM knowledge_watermarks k"
        " JOIN conversations c ON c.id = k.conversation_id WHERE c.user_id = $1",
        user_id,
    )
    return through


async def outbox(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT id, status, job_id, payload::json AS payload, message_ids FROM knowledge_dispatches"
        " ORDER BY created_at, position"
    )


async def assert_each_chunk_once_in_the_stream(pool: asyncpg.Pool, stream: JobsStream) -> None:
    """Each outbox row once in the stream, each journal's in the order they were cut."""
    rows = await outbox(pool)
    assert rows
    assert {row["status"] for row in rows} == {"enqueued"}
    published = await stream.published()

    def journal_of(payload: dict[str, Any]) -> tuple[str, str]:
        return payload["requested_by_user_id"], payload["journal_reference"]

    journals = {journal_of(row["payload"]) for row in rows}
    for key in journals:
        mine = [row for row in rows if journal_of(row["payload"]) == key]
        jobs = [job for job in published if journal_of(job.envelope["payload"]) == key]
        assert [job.msg_id for job in jobs] == [str(row["id"]) for row in mine]
        for row, job in zip(mine, jobs, strict=True):
            assert row["job_id"] == job.envelope["job_id"] == job_id_for(str(row["id"]))
            assert job.envelope["payload"] == row["payload"]
    assert len(published) == len(rows)


async def test_an_update_enqueues_every_chunk_and_records_its_job(
    pool: asyncpg.Pool, client: OrchestratorClient, stream: JobsStream
) -> None:
    user_id = await journal(pool, 6)
    system = await start(pool, client.enqueue_batch)
    handle = system.handle("knowledge")
    result = await request_update(handle, RequestUpdate(user_id), timeout=30)
    assert result.status == "queued"
    rows = await outbox(pool)
    assert len(rows) > 1
    assert list(result.job_ids) == [row["job_id"] for row in rows]
    await assert_each_chunk_once_in_the_stream(pool, stream)
    again = await request_update(handle, RequestUpdate(user_id), timeout=30)
    assert again.status == "nothing_to_update"
    await stop(system)


async def test_a_crash_between_outbox_write_and_enqueue_loses_nothing(
    pool: asyncpg.Pool, client: OrchestratorClient, stream: JobsStream
) -> None:
    user_id = await journal(pool, 6)

    async def crash_before_enqueue(request: pb.EnqueueJobRequest) -> str:
        raise Crash("died before enqueueing")

    system = await start(pool, one_at_a_time(crash_before_enqueue))
    with pytest.raises(Crash):
        await request_update(system.handle("knowledge"), RequestUpdate(user_id), timeout=30)
    await stop(system)
    rows = await outbox(pool)
    assert rows
    assert {row["status"] for row in rows} == {"pending"}
    assert await stream.published() == []

    restarted = await start(pool, client.enqueue_batch)  # resumes pending rows on start

    async def settled() -> bool:
        return {row["status"] for row in await outbox(pool)} == {"enqueued"}

    assert await eventually(settled)
    await stop(restarted)
    await assert_each_chunk_once_in_the_stream(pool, stream)


async def test_a_crash_between_enqueue_and_outbox_update_enqueues_nothing_twice(
    pool: asyncpg.Pool, client: OrchestratorClient, stream: JobsStream
) -> None:
    user_id = await journal(pool, 6)
    enqueued: list[str] = []
    crash_at = 3

    async def crash_after_enqueue(request: pb.EnqueueJobRequest) -> str:
        job_id = await client.enqueue(request)
        enqueued.append(job_id)
        if len(enqueued) == crash_at:
            raise Crash("died before recording the job ids")
        return job_id

    system = await start(pool, one_at_a_time(crash_after_enqueue))
    with pytest.raises(Crash):
        await request_update(system.handle("knowledge"), RequestUpdate(user_id), timeout=30)
    await stop(system)
    assert {row["status"] for row in await outbox(pool)} == {"pending"}
    assert len(await stream.published()) == crash_at  # in the stream, unknown to the outbox

    restarted = await start(pool, client.enqueue_batch)

    async def settled() -> bool:
        return {row["status"] for row in await outbox(pool)} == {"enqueued"}

    assert await eventually(settled)
    await stop(restarted)
    await assert_each_chunk_once_in_the_stream(pool, stream)
    rows = await outbox(pool)
    assert [row["job_id"] for row in rows[:crash_at]] == enqueued  # the first enqueue's ids


async def test_a_refused_job_is_recorded_as_failed_and_not_retried(
    pool: asyncpg.Pool, stream: JobsStream
) -> None:
    user_id = await journal(pool, 2)
    calls: list[str] = []

    async def refuse(request: pb.EnqueueJobRequest) -> str:
        calls.append(request.idempotency_key)
        raise InvalidJob("messages[0].role must be one of ...")

    system = await start(pool, one_at_a_time(refuse))
    result = await request_update(system.handle("knowledge"), RequestUpdate(user_id), timeout=30)
    assert result.status == "rejected"
    assert result.errors
    rows = await pool.fetch("SELECT id, status, last_error, attempts FROM knowledge_dispatches")
    assert [(r["status"], r["attempts"]) for r in rows] == [("failed", 1)] * len(rows)
    assert all("role" in r["last_error"] for r in rows)
    jobs = await pool.fetch(  # recorded when the rows were written; refused, they never run
        "SELECT state, detail FROM jobs WHERE id = ANY($1::uuid[])",
        [job_id_for(str(r["id"])) for r in rows],
    )
    assert [(j["state"], j["detail"]) for j in jobs] == [
        ("FAILED_FINAL", r["last_error"]) for r in rows
    ]
    await stop(system)
    assert len(calls) == len(rows)


async def test_a_job_not_taken_now_leaves_it_and_the_journals_later_jobs_pending(
    pool: asyncpg.Pool, client: OrchestratorClient, stream: JobsStream
) -> None:
    """The second job of a batch is unavailable while the rest went out: it and every later
    job stay pending, and the retry adds only what the stream lacks, in the order cut."""
    user_id = await journal(pool, 6)

    async def second_unavailable(requests: Sequence[pb.EnqueueJobRequest]) -> list[Enqueued]:
        outcomes = await client.enqueue_batch([requests[0], *requests[2:]])
        return [outcomes[0], EnqueueUnavailable("JetStream is away"), *outcomes[1:]]

    system = await start(pool, second_unavailable)
    result = await request_update(system.handle("knowledge"), RequestUpdate(user_id), timeout=30)
    await stop(system)
    assert result.status == "pending"
    rows = await outbox(pool)
    assert len(rows) > 2
    assert [row["status"] for row in rows] == ["enqueued"] + ["pending"] * (len(rows) - 1)

    restarted = await start(pool, client.enqueue_batch)

    async def settled() -> bool:
        return {row["status"] for row in await outbox(pool)} == {"enqueued"}

    assert await eventually(settled)
    await stop(restarted)
    published = [job.msg_id for job in await stream.published()]
    skipped = str(rows[1]["id"])
    assert published == [str(row["id"]) for row in rows if str(row["id"]) != skipped] + [skipped]


def test_a_journals_jobs_go_in_batches_of_at_most_batch_bytes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    requests = [
        pb.EnqueueJobRequest(job_type="knowledge.update", payload_json="x" * size)
        for size in (40, 40, 40, 200, 10)
    ]
    monkeypatch.setattr(enqueue, "BATCH_BYTES", 2 * requests[0].ByteSize())  # two of the first
    assert [list(batch) for batch in enqueue.batches(requests)] == [[0, 1], [2], [3], [4]]


async def test_updates_are_answered_while_the_orchestrator_does_not_answer(
    pool: asyncpg.Pool, client: OrchestratorClient, stream: JobsStream
) -> None:
    """An enqueue that hangs delays no update (each is accepted once its rows are written,
    with its jobs' ids), and a resume meanwhile leaves the rows under way alone."""
    users = [await journal(pool, 4) for _ in range(3)]
    release = asyncio.Event()
    calls: list[str] = []

    async def stalled(request: pb.EnqueueJobRequest) -> str:
        calls.append(request.idempotency_key)
        await release.wait()
        return await client.enqueue(request)

    system = await start(pool, one_at_a_time(stalled))
    handle = system.handle("knowledge")
    results = await asyncio.gather(
        *(request_update(handle, RequestUpdate(u), timeout=30, patience=0) for u in users)
    )
    rows = await outbox(pool)
    assert [r.status for r in results] == ["pending"] * len(users)
    assert [job for r in results for job in r.job_ids] == [
        job_id_for(str(row["id"])) for row in rows
    ]
    assert {row["status"] for row in rows} == {"pending"}

    handle.ref.tell(ResumePending())  # a resume round while every row is under way ...
    nothing = await request_update(handle, RequestUpdate(uuid.uuid4()), timeout=30)
    assert nothing.status == "nothing_to_update"  # ... is over: the mailbox is in order
    assert len(calls) == len(users)  # the first job of each journal, once: nothing resent

    release.set()

    async def settled() -> bool:
        return {row["status"] for row in await outbox(pool)} == {"enqueued"}

    assert await eventually(settled)
    await stop(system)
    assert sorted(calls) == sorted(str(row["id"]) for row in rows)
    await assert_each_chunk_once_in_the_stream(pool, stream)


async def test_messages_appended_while_an_update_runs_go_with_the_next_one(
    pool: asyncpg.Pool, client: OrchestratorClient, stream: JobsStream
) -> None:
    user_id = await journal(pool, 6)
    loop = asyncio.get_running_loop()
    appended: list[bool] = []

    def append_between_selection_and_write(text: str) -> int:
        """Runs on the actor thread while it chunks what it selected."""
        if not appended:
            appended.append(True)
            run_on_loop(loop, append(pool, user_id, 3), timeout=10)
        return estimate_tokens(text)

    system = await start(pool, client.enqueue_batch, estimate=append_between_selection_and_write)
    handle = system.handle("knowledge")
    assert (await request_update(handle, RequestUpdate(user_id), timeout=30)).status == "queued"
    assert await dispatched_sequences(pool) == [1, 2, 3, 4, 5, 6]
    assert await watermark(pool, user_id) == 6
    assert (await request_update(handle, RequestUpdate(user_id), timeout=30)).status == "queued"
    assert await dispatched_sequences(pool) == list(range(1, 10))
    assert await watermark(pool, user_id) == 9
    again = await request_update(handle, RequestUpdate(user_id), timeout=30)
    assert again.status == "nothing_to_update"
    await stop(system)
    await assert_each_chunk_once_in_the_stream(pool, stream)


async def test_of_two_dispatches_of_one_selection_only_one_writes(pool: asyncpg.Pool) -> None:
    user_id = await journal(pool, 6)
    for through in (6, 9):  # the journal's first watermark, then one that moves
        selection = await knowledge_store.uncommitted(pool, user_id, None)
        chunks = chunk(selection.entries, budget=BUDGET, requested_by=str(user_id))
        results = await asyncio.gather(
            *(knowledge_store.write(pool, user_id, selection, chunks) for _ in range(2)),
            return_exceptions=True,
        )
        assert sorted(type(result).__name__ for result in results) == ["AlreadyDispatched", "list"]
        assert await watermark(pool, user_id) == through
        await append(pool, user_id, 3)
    assert await dispatched_sequences(pool) == list(range(1, 10))
    assert [
        e.sequence for e in (await knowledge_store.uncommitted(pool, user_id, None)).entries
    ] == [
        10,
        11,
        12,
    ]


async def test_messages_committed_before_watermarks_existed_stay_committed(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migration 0004 starts a journal at its leading committed run; later flags still count."""
    dsn = str(settings.assistant_db_dsn)
    before = [m for m in available_migrations() if m.name != "knowledge_watermarks"]
    monkeypatch.setattr("exobrain.store.migrations.available_migrations", lambda: before)
    await migrate(dsn)
    monkeypatch.undo()
    pool = await create_pool(settings)
    try:
        user_id = await journal(pool, 6)
        await pool.execute(
            "UPDATE messages SET committed_to_knowledge_base = true"
            " WHERE user_id = $1 AND sequence = ANY($2::bigint[])",
            user_id,
            [1, 2, 4],
        )
        await migrate(dsn)
        assert await watermark(pool, user_id) == 2
        selection = await knowledge_store.uncommitted(pool, user_id, None)
        assert [entry.sequence for entry in selection.entries] == [3, 5, 6]
        chunks = chunk(selection.entries, budget=8000, requested_by=str(user_id))
        assert [len(piece.message_ids) for piece in chunks] == [1, 2]  # runs: 3, then 5-6
        await knowledge_store.write(pool, user_id, selection, chunks)
        assert await watermark(pool, user_id) == 6
        assert (await knowledge_store.uncommitted(pool, user_id, None)).entries == []
    finally:
        await pool.close()
