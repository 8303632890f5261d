"""Job handlers for the worker tests, importable by an ``exobrain worker`` subprocess.

``test.effect`` writes one row per run into ``worker_test_effects`` through the
job's transaction. On the first attempt, when ``WORKER_TEST_STALL_FILE`` is
set, it then creates that file and never returns, so a test can kill its
worker mid-job, with the effect written but not committed.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

from exobrain.worker import JobContext

EFFECT = "test.effect"
STALL_FILE = "WORKER_TEST_STALL_FILE"
EFFECTS_TABLE = """
CREATE TABLE IF NOT EXISTS worker_test_effects (
    job_id uuid NOT NULL,
    attempt integer NOT NULL,
    worker text NOT NULL
)
"""


async def effect(context: JobContext) -> str:
    await context.connection.execute(
        "INSERT INTO worker_test_effects (job_id, attempt, worker) VALUES ($1, $2, $3)",
        uuid.UUID(context.job.id),
        context.attempt,
        os.environ.get("WORKER_TEST_NAME", "in-process"),
    )
    stall = os.environ.get(STALL_FILE)
    if stall and context.attempt == 1:
        await asyncio.to_thread(Path(stall).touch)
        await asyncio.Event().wait()
    return f"effect written by attempt {context.attempt}"


async def flaky(context: JobContext) -> str:
    """Fails its first attempt, then succeeds."""
    if context.attempt == 1:
        raise RuntimeError("the first attempt fails")
    return f"done on attempt {context.attempt}"
