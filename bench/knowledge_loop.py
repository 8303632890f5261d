"""The knowledge loop: a backlog through one worker, then recall over 100,000 passages.

In-process dispatch (``--dsn``; NATS at ``$EXOBRAIN_NATS_URL``) as in the
``knowledge`` benchmark, and one ``exobrain worker`` process with the service's
embedder (``EMBEDDINGS_BASE_URL``, else the local model on this machine's CPU)
and Qdrant's local mode in a temporary state dir.

1. **Backlog**: an update of 10,000 uncommitted messages (100-1,500 characters,
   10 journals) from the request to the last job ``SUCCEEDED`` in the jobs
   table: jobs/s and passages (messages)/s through the worker.
2. **Recall**: the worker stopped (local mode is one process per directory), the
   user's passages are topped up to 100,000 with points of random unit vectors
   (a search's cost does not depend on what the vectors mean), and
   ``knowledge_search``'s store answers RECALL_QUERIES queries one after
   another: embedding the query plus the filtered search, p50/p99.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import aiohttp
import numpy as np
from qdrant_client import AsyncQdrantClient, models

from exobrain.config import Settings
from exobrain.knowledge import LazyQdrant, Passage, passage_store

from .knowledge import MESSAGES, Stack, dispatch_stack, journals
from .registry import Options, benchmark
from .stats import Summary, summarize

PASSAGES, RECALL_QUERIES, RECALL_LIMIT = 100_000, 200, 5
_UPSERT_BATCH = 2_000
_BACKLOG_TIMEOUT = 1_800.0


@benchmark("knowledge-loop")
async def knowledge_loop(session: aiohttp.ClientSession, options: Options) -> list[Summary]:
    """A 10,000-message backlog through one worker; recall p50/p99 over 100,000 passages."""
    if options.dsn is None:
        raise SystemExit("the knowledge-loop benchmark needs --dsn or ASSISTANT_DB_DSN")
    state = Path(tempfile.mkdtemp(prefix="exobrain-bench-knowledge-"))
    collection = f"bench_{secrets.token_hex(3)}"
    async with dispatch_stack(options.dsn) as stack:
        settings = stack.settings.model_copy(
            update={"exobrain_state_dir": state, "knowledge_collection": collection}
        )
        with _worker(settings):
            user_id = await journals(stack.pool)
            backlog = await _backlog(stack, user_id)
        recall = await _recall(settings, str(user_id))
    return [backlog, recall]


@contextlib.contextmanager
def _worker(settings: Settings) -> Iterator[None]:
    """``exobrain worker`` on ``settings``, consuming once this returns; stopped with SIGTERM."""
    environment = {
        **os.environ,
        "ASSISTANT_DB_DSN": str(settings.assistant_db_dsn),
        "EXOBRAIN_NATS_URL": str(settings.exobrain_nats_url),
        "JOB_STREAM_NAME": settings.job_stream_name,
        "JOB_SUBJECT_PREFIX": settings.job_subject_prefix,
        "EXOBRAIN_STATE_DIR": str(settings.exobrain_state_dir),
        "KNOWLEDGE_COLLECTION": settings.knowledge_collection,
        "LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "exobrain", "worker"],
        env=environment,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "job worker is consuming" not in line:
            raise RuntimeError(f"the worker did not start: {line!r}")
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _backlog(stack: Stack, user_id: uuid.UUID) -> Summary:
    started = time.perf_counter()
    result = await stack.update(user_id)
    jobs = list(result.job_ids)
    deadline = started + _BACKLOG_TIMEOUT
    while True:
        rows = await stack.pool.fetch(
            "SELECT state, count(*) FROM jobs WHERE id = ANY($1::uuid[]) GROUP BY state", jobs
        )
        states: dict[str, int] = {row["state"]: row["count"] for row in rows}
        if states.get("SUCCEEDED", 0) + states.get("FAILED_FINAL", 0) == len(jobs):
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"the backlog did not finish in {_BACKLOG_TIMEOUT:g}s: {states}")
        await asyncio.sleep(0.05)
    seconds = time.perf_counter() - started
    failed = states.get("FAILED_FINAL", 0)
    print(
        f"knowledge backlog: {MESSAGES} messages → {len(jobs)} jobs, last SUCCEEDED after "
        f"{seconds:.1f} s: {len(jobs) / seconds:.2f} jobs/s, {MESSAGES / seconds:.0f} passages/s, "
        f"{failed} failed"
    )
    return summarize(
        f"knowledge backlog {MESSAGES} messages {len(jobs)} jobs, one worker",
        [seconds],
        concurrency=1,
        seconds=seconds,
        errors=failed,
        notes={"jobs/s": len(jobs) / seconds, "passages/s": MESSAGES / seconds},
        key="knowledge_loop.backlog",
    )


async def _recall(settings: Settings, user_id: str) -> Summary:
    qdrant = LazyQdrant(settings)
    store = passage_store(settings, qdrant.client)
    if store is None:
        raise RuntimeError("no embeddings: set EMBEDDINGS_BASE_URL or install the local model")
    client = await asyncio.to_thread(qdrant.client)
    try:
        held = (await client.count(settings.knowledge_collection, exact=True)).count
        info = await client.get_collection(settings.knowledge_collection)
        vectors = info.config.params.vectors
        assert isinstance(vectors, models.VectorParams)
        filled = time.perf_counter()
        await _top_up(client, settings.knowledge_collection, user_id, held, vectors.size)
        fill_seconds = time.perf_counter() - filled
        queries = [f"what did I say about {word}?" for word in _words(RECALL_QUERIES)]
        latencies = []
        for query in queries:
            started = time.perf_counter()
            found = await store.search(user_id, query, RECALL_LIMIT)
            latencies.append(time.perf_counter() - started)
            if len(found) != RECALL_LIMIT:
                raise RuntimeError(f"recall found {len(found)} passages, not {RECALL_LIMIT}")
    finally:
        await store.close()
        await qdrant.close()
    print(
        f"knowledge recall: {PASSAGES} passages of one user ({held} from the backlog, the rest "
        f"random; topped up in {fill_seconds:.0f} s), {RECALL_QUERIES} queries in sequence"
    )
    return summarize(
        f"knowledge recall over {PASSAGES} passages, limit {RECALL_LIMIT}",
        latencies,
        concurrency=1,
        seconds=sum(latencies),
        errors=0,
        key="knowledge_loop.recall",
    )


async def _top_up(
    client: AsyncQdrantClient, collection: str, user_id: str, held: int, dimensions: int
) -> None:
    """Random unit vectors with real-looking payloads, until the user has PASSAGES."""
    rng = np.random.default_rng(7)
    for start in range(held, PASSAGES, _UPSERT_BATCH):
        count = min(_UPSERT_BATCH, PASSAGES - start)
        vectors = rng.standard_normal((count, dimensions)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        passages = [
            Passage(user_id, "2025/01/01", start + n, 0, "user", "2025-01-01T00:00:00Z", "filler")
            for n in range(count)
        ]
        await client.upsert(
            collection,
            points=[
                models.PointStruct(id=p.point_id, vector=v.tolist(), payload=asdict(p))
                for p, v in zip(passages, vectors, strict=True)
            ],
            wait=True,
        )


def _words(count: int) -> list[str]:
    rng = random.Random(11)
    topics = ("tea", "sleep", "the architecture review", "Friday meetings", "the dentist", "rates")
    return [rng.choice(topics) for _ in range(count)]
