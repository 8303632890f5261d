"""The job worker on real NATS JetStream and PostgreSQL: success, retries, dead letters, sharing."""

from __future__ import annotations

import asyncio
import functools
from collections import Counter

import nats
import orjson
from orchestrator.support import JobsStream, eventually

from exobrain.config import Settings
from exobrain.jobs.lifecycle import JobState
from exobrain.worker import Handler, JobContext, RetryPolicy, durable_name

from .handlers import EFFECT, effect
from .support import USER, effects, enqueue, job_row, running_worker, status_log

POISON = "test.poison"
SLOW = "test.slow"


async def poison(context: JobContext) -> str:
    raise ValueError(f"cannot digest attempt {context.attempt}")


async def test_a_job_runs_once_and_succeeds(worker_settings: Settings) -> None:
    dsn = str(worker_settings.assistant_db_dsn)
    async with (
        status_log(worker_settings) as log,
        running_worker(worker_settings, {EFFECT: effect}),
    ):
        job_id = await enqueue(worker_settings, EFFECT, {"n": 1})
        assert await eventually(lambda: _state_is(dsn, job_id, JobState.SUCCEEDED))
        await eventually(lambda: _true(len(log.of(job_id)) == 2))
    assert log.of(job_id) == [("STARTED", 1), ("SUCCEEDED", 1)]
    row = await job_row(dsn, job_id)
    assert row is not None
    assert (row["job_type"], row["user_id"], row["attempt"]) == (EFFECT, USER, 1)
    assert row["detail"] == "effect written by attempt 1"
    assert row["created_at"] <= row["started_at"] <= row["finished_at"]
    assert await effects(dsn, job_id) == [(1, "in-process")]
    [succeeded] = [e for e in log.events if e.state is JobState.SUCCEEDED]
    assert succeeded.event()["terminal"] is True
    assert succeeded.user_id == USER


async def test_a_finished_job_delivered_again_is_not_run_again(worker_settings: Settings) -> None:
    dsn = str(worker_settings.assistant_db_dsn)
    async with running_worker(worker_settings, {EFFECT: effect}):
        job_id = await enqueue(worker_settings, EFFECT, {"n": 1}, key="first")
        assert await eventually(lambda: _state_is(dsn, job_id, JobState.SUCCEEDED))
        # The same job id under another message id: the stream keeps both.
        client = await nats.connect(str(worker_settings.exobrain_nats_url))
        try:
            envelope = {
                "schema_version": 1,
                "job_id": job_id,
                "job_type": EFFECT,
                "correlation_id": USER,
                "payload": {"n": 1},
                "attempt": 0,
                "created_at": "2026-12-01T00:00:00Z",
            }
            subject = f"{worker_settings.job_subject_prefix}.{EFFECT}.requested"
            await client.jetstream().publish(subject, orjson.dumps(envelope))
        finally:
            await client.close()
        consumer = durable_name(EFFECT)
        assert await eventually(lambda: _all_acknowledged(worker_settings, consumer))
    assert await effects(dsn, job_id) == [(1, "in-process")]


async def test_a_poison_job_fails_for_good_after_the_last_attempt_and_is_dead_lettered(
    worker_settings: Settings, stream: JobsStream
) -> None:
    dsn = str(worker_settings.assistant_db_dsn)
    async with (
        status_log(worker_settings) as log,
        running_worker(worker_settings, {POISON: poison}),
    ):
        job_id = await enqueue(worker_settings, POISON, {"n": 1}, key="poison-key")
        assert await eventually(lambda: _state_is(dsn, job_id, JobState.FAILED_FINAL))
        await eventually(lambda: _true(len(log.of(job_id)) == 6))
    assert log.of(job_id) == [
        ("STARTED", 1),
        ("RETRYING", 1),
        ("STARTED", 2),
        ("RETRYING", 2),
        ("STARTED", 3),
        ("FAILED_FINAL", 3),
    ]
    row = await job_row(dsn, job_id)
    assert row is not None
    assert row["attempt"] == 3
    assert row["detail"] == "ValueError: cannot digest attempt 3"
    assert row["finished_at"] is not None
    published = await stream.published()
    [dead] = [p for p in published if p.subject == f"{stream.prefix}.{POISON}.dead"]
    [original] = [p for p in published if p.subject == f"{stream.prefix}.{POISON}.requested"]
    assert dead.envelope == original.envelope
    assert dead.msg_id == f"dead.{job_id}"


def test_backoff_doubles_up_to_its_bound() -> None:
    policy = RetryPolicy(attempts=5, backoff=0.5, backoff_max=3.0)
    assert [policy.delay(attempt) for attempt in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


async def test_a_malformed_message_goes_straight_to_the_dead_letters(
    worker_settings: Settings, stream: JobsStream
) -> None:
    async with running_worker(worker_settings, {POISON: poison}):
        await enqueue(worker_settings, POISON, {"n": 0})  # creates the stream
        client = await nats.connect(str(worker_settings.exobrain_nats_url))
        try:
            await client.jetstream().publish(f"{stream.prefix}.{POISON}.requested", b"not json")
        finally:
            await client.close()

        assert await eventually(lambda: _dead_data(stream, POISON))
    assert b"not json" in await _dead_data(stream, POISON)


async def test_two_workers_share_one_consumer(worker_settings: Settings) -> None:
    """With one slot each, two jobs running at once must be on two different workers."""
    settings = worker_settings.model_copy(update={"job_worker_concurrency": 1})
    dsn = str(settings.assistant_db_dsn)
    runs: Counter[str] = Counter()
    running = 0
    both = asyncio.Event()

    def slow(name: str) -> Handler:
        async def handle(context: JobContext) -> str:
            nonlocal running
            runs[context.job.id] += 1
            running += 1
            if running == 2:
                both.set()
            try:
                await asyncio.wait_for(both.wait(), timeout=10)
            finally:
                running -= 1
            return name

        return handle

    async with (
        running_worker(settings, {SLOW: slow("a")}),
        running_worker(settings, {SLOW: slow("b")}),
    ):
        job_ids = [await enqueue(settings, SLOW, {"n": n}) for n in range(8)]
        for job_id in job_ids:
            assert await eventually(functools.partial(_state_is, dsn, job_id, JobState.SUCCEEDED))
    details: Counter[str] = Counter()
    for job_id in job_ids:
        row = await job_row(dsn, job_id)
        assert row is not None
        details[row["detail"]] += 1
    assert set(details) == {"a", "b"}
    assert runs == Counter(dict.fromkeys(job_ids, 1))


async def _state_is(dsn: str, job_id: str, state: JobState) -> bool:
    row = await job_row(dsn, job_id)
    return row is not None and row["state"] == state.value


async def _true(value: bool) -> bool:
    return value


async def _all_acknowledged(settings: Settings, consumer: str) -> bool:
    client = await nats.connect(str(settings.exobrain_nats_url))
    try:
        info = await client.jetstream().consumer_info(settings.job_stream_name, consumer)
    finally:
        await client.close()
    delivered = info.delivered.stream_seq or 0
    return info.num_pending == 0 and info.num_ack_pending == 0 and delivered >= 2


async def _dead_data(stream: JobsStream, job_type: str) -> bytes:
    client = await nats.connect(stream.nats_url)
    try:
        message = await client.jetstream().get_last_msg(
            stream.name, f"{stream.prefix}.{job_type}.dead"
        )
    except nats.js.errors.NotFoundError:
        return b""
    finally:
        await client.close()
    return message.data or b""
