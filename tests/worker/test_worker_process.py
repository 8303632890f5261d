"""``exobrain worker`` stopped mid-job, killed or not: the job runs again, its effect lands once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from orchestrator.support import eventually

from exobrain.config import Settings
from exobrain.jobs.lifecycle import JobState

from .handlers import EFFECT, STALL_FILE, effect
from .support import effects, enqueue, job_row, running_worker

TESTS = Path(__file__).parents[1]


@pytest.fixture
def doomed_worker(worker_settings: Settings, tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """An ``exobrain worker`` whose first attempt at any job stalls after writing its effect."""
    settings = worker_settings
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("JOB_", "EXOBRAIN_"))
    } | {
        "APP_ENV": "local",
        "ASSISTANT_DB_DSN": str(settings.assistant_db_dsn),
        "EXOBRAIN_NATS_URL": str(settings.exobrain_nats_url),
        "JOB_STREAM_NAME": settings.job_stream_name,
        "JOB_SUBJECT_PREFIX": settings.job_subject_prefix,
        "JOB_WORKER_HANDLERS": orjson.dumps({EFFECT: "worker.handlers:effect"}).decode(),
        "JOB_WORKER_ACK_WAIT_SECONDS": "1",
        "JOB_WORKER_MAX_ATTEMPTS": "3",
        "PYTHONPATH": str(TESTS),
        STALL_FILE: str(tmp_path / "stalled"),
        "WORKER_TEST_NAME": "doomed",
        "ACTOR_SHUTDOWN_TIMEOUT_SECONDS": "1",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "exobrain", "worker"],
        env=environment,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("job worker is consuming "), line
        assert EFFECT in line
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


async def test_a_job_whose_worker_was_killed_runs_again_without_a_second_effect(
    worker_settings: Settings, doomed_worker: subprocess.Popen[str], tmp_path: Path
) -> None:
    dsn = str(worker_settings.assistant_db_dsn)
    job_id = await enqueue(worker_settings, EFFECT, {"n": 1})
    stalled = tmp_path / "stalled"

    async def stalled_mid_job() -> bool:
        return stalled.exists()

    assert await eventually(stalled_mid_job)
    row = await job_row(dsn, job_id)
    assert row is not None
    assert (row["state"], row["attempt"]) == (JobState.STARTED.value, 1)
    doomed_worker.send_signal(signal.SIGKILL)
    await asyncio.to_thread(doomed_worker.wait, 10)
    assert doomed_worker.returncode == -signal.SIGKILL

    async with running_worker(worker_settings, {EFFECT: effect}):

        async def succeeded() -> bool:
            row = await job_row(dsn, job_id)
            return row is not None and row["state"] == JobState.SUCCEEDED.value

        assert await eventually(succeeded)
    row = await job_row(dsn, job_id)
    assert row is not None
    assert row["attempt"] == 2
    assert await effects(dsn, job_id) == [(2, "in-process")]


async def test_a_worker_stopped_mid_job_leaves_it_to_the_next_and_exits_cleanly(
    worker_settings: Settings, doomed_worker: subprocess.Popen[str], tmp_path: Path
) -> None:
    dsn = str(worker_settings.assistant_db_dsn)
    job_id = await enqueue(worker_settings, EFFECT, {"n": 2})

    async def stalled_mid_job() -> bool:
        return (tmp_path / "stalled").exists()

    assert await eventually(stalled_mid_job)
    doomed_worker.send_signal(signal.SIGTERM)  # the job outlives the 1 s grace: cancelled
    assert await asyncio.to_thread(doomed_worker.wait, 20) == 0
    assert await effects(dsn, job_id) == []
    async with running_worker(worker_settings, {EFFECT: effect}):

        async def succeeded() -> bool:
            row = await job_row(dsn, job_id)
            return row is not None and row["state"] == JobState.SUCCEEDED.value

        assert await eventually(succeeded)
    assert await effects(dsn, job_id) == [(2, "in-process")]


def test_the_worker_needs_postgresql_and_nats(tmp_path: Path) -> None:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ASSISTANT_", "EXOBRAIN_", "JOB_"))
    }
    finished = subprocess.run(
        [sys.executable, "-m", "exobrain", "worker"],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode == 2
    assert finished.stderr.splitlines() == [
        "configuration error: ASSISTANT_DB_DSN: required by `exobrain worker`",
        "configuration error: EXOBRAIN_NATS_URL: required by `exobrain worker`",
    ]
