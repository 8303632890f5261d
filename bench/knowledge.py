"""One knowledge update of 10,000 uncommitted messages over 10 journals, end to end.

In-process (``--dsn``; NATS at ``$EXOBRAIN_NATS_URL``, default
nats://127.0.0.1:4222): the KnowledgeDispatchActor as the service runs it,
enqueueing through a real orchestrator on this event loop into a JetStream
stream of the benchmark's own (deleted afterwards). Figures: wall time of the
update request and this process's CPU time for it, jobs in the stream against
the fewest any packing could use (:func:`fewest_jobs`), and the largest job's
estimated tokens; a job over budget or a message no job carries counts as an
error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import asyncpg
import nats
import orjson
from nats.aio.client import Client as NatsClient

from exobrain.actors.journal import AppendMessages, NewMessage
from exobrain.actors.journal.store import write_batch
from exobrain.actors.knowledge import (
    Entry,
    KnowledgeDispatchActor,
    RequestUpdate,
    UpdateResult,
    estimate_tokens,
    request_update,
)
from exobrain.actors.knowledge.chunking import CHARS_PER_TOKEN
from exobrain.actors.knowledge.store import uncommitted
from exobrain.config import Settings, load_settings
from exobrain.jobs import knowledge_message, knowledge_payload
from exobrain.orchestrator import OrchestratorClient, start_orchestrator
from exobrain.store import create_pool, migrate
from exobrain.supervision import ActorSystem, ChildSpec, Intensity

from .registry import Options, benchmark
from .stats import Summary, summarize

MESSAGES, JOURNALS, ROUNDS = 10_000, 10, 3
WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "journals")


@dataclass(frozen=True, slots=True)
class Stack:
    """What an update runs through: the dispatch actor, the orchestrator, JetStream."""

    settings: Settings
    pool: asyncpg.Pool
    client: NatsClient
    system: ActorSystem

    async def update(self, user_id: uuid.UUID) -> UpdateResult:
        handle = self.system.handle("knowledge")
        return await request_update(handle, RequestUpdate(user_id), timeout=120)


@contextlib.asynccontextmanager
async def dispatch_stack(dsn: str) -> AsyncIterator[Stack]:
    """The service's KnowledgeDispatchActor enqueueing through a real orchestrator on this
    loop into a JetStream stream of its own (deleted at the end)."""
    token = secrets.token_hex(3)
    settings = load_settings(
        assistant_db_dsn=dsn,
        exobrain_nats_url=os.environ.get("EXOBRAIN_NATS_URL", "nats://127.0.0.1:4222"),
        job_stream_name=f"BENCH_{token}",
        job_subject_prefix=f"bench{token}.jobs",
        knowledge_update_max_tokens=8000,
    )
    await migrate(dsn)
    pool = await create_pool(settings)
    client = await nats.connect(str(settings.exobrain_nats_url))
    orchestrator = await start_orchestrator(settings, client, "127.0.0.1:0")
    enqueuer = OrchestratorClient(f"127.0.0.1:{orchestrator.port}", deadline=10.0)
    loop = asyncio.get_running_loop()
    system = await asyncio.to_thread(
        ActorSystem,
        [
            ChildSpec(
                "knowledge",
                lambda supervision: KnowledgeDispatchActor.start(
                    supervision,
                    pool=pool,
                    loop=loop,
                    enqueue=enqueuer.enqueue_batch,
                    max_tokens=settings.knowledge_update_max_tokens,
                    enqueue_timeout=10.0,
                    resume_interval=60.0,
                ),
            )
        ],
        intensity=Intensity(),
    )
    try:
        yield Stack(settings, pool, client, system)
    finally:
        await asyncio.to_thread(system.stop, 10)
        await enqueuer.close()
        await orchestrator.stop(grace=1.0)
        await client.jetstream().delete_stream(settings.job_stream_name)
        await client.close()
        await pool.close()


@benchmark("knowledge")
async def knowledge(session: aiohttp.ClientSession, options: Options) -> list[Summary]:
    """Wall time, jobs and max tokens per job of one 10,000-message update (8,000-token budget)."""
    if options.dsn is None:
        raise SystemExit("the knowledge benchmark needs --dsn or ASSISTANT_DB_DSN")
    results = []
    async with dispatch_stack(options.dsn) as stack:
        budget = stack.settings.knowledge_update_max_tokens
        for round_ in range(1, ROUNDS + 1):
            user_id = await journals(stack.pool)
            selected = (await uncommitted(stack.pool, user_id, None)).entries
            fewest = fewest_jobs(selected, budget, str(user_id))
            started, cpu = time.perf_counter(), time.process_time()
            result = await stack.update(user_id)
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            stream = stack.settings.job_stream_name
            tokens, carried = await _jobs(stack.client, stream, result.job_ids)
            over = sum(t > budget for t in tokens)
            missed = MESSAGES - carried
            ratio = len(result.job_ids) / fewest
            print(
                f"knowledge update round {round_}: {MESSAGES} messages in {JOURNALS} journals → "
                f"{len(result.job_ids)} jobs ({result.status}; fewest possible {fewest}, "
                f"ratio {ratio:.3f}), max {max(tokens)} tokens/job, {over} over budget, "
                f"{missed} messages not carried, {seconds * 1000:.0f} ms "
                f"(CPU {cpu * 1000:.0f} ms)"
            )
            results.append(
                summarize(
                    f"knowledge update {len(tokens)} jobs max {max(tokens)} tok",
                    [seconds],
                    concurrency=1,
                    seconds=seconds,
                    errors=over + missed + (result.status != "queued"),
                    notes={"fewest jobs": fewest, "jobs ratio": ratio, "cpu ms": cpu * 1000},
                )
            )
    return results


async def journals(pool: asyncpg.Pool) -> uuid.UUID:
    """A new user with MESSAGES uncommitted messages of 100-1,500 characters over JOURNALS days."""
    user_id: uuid.UUID = await pool.fetchval(
        "INSERT INTO users (email, name) VALUES ($1, 'Bench') RETURNING id",
        f"bench-{uuid.uuid4()}@bench",
    )
    rng = random.Random(user_id.int)
    per_journal = MESSAGES // JOURNALS
    for day in range(1, JOURNALS + 1):
        messages = tuple(
            NewMessage(rng.choice(("user", "assistant")), _text(rng, rng.randint(100, 1500)))
            for _ in range(per_journal)
        )
        [stored] = await write_batch(
            pool, [AppendMessages(user_id, f"2026/10/{day:02d}", messages)]
        )
        assert not isinstance(stored, Exception)
    return user_id


def fewest_jobs(entries: list[Entry], budget: int, requested_by: str) -> int:
    """A lower bound on the jobs any packing of ``entries`` into jobs of at most
    ``budget`` tokens needs, in order or not, with the default estimator.

    A job carries one journal: the payload's framing, then its messages' JSON
    fragments with a comma between each, in at most ``budget * CHARS_PER_TOKEN``
    characters. So each journal needs at least its fragments'
    characters (and a comma each) over what a job holds besides its framing.
    """
    needed: dict[str, int] = {}
    for entry in entries:
        fragment = orjson.dumps(
            knowledge_message(entry.role, entry.content, entry.sequence, entry.created_at)
        )
        needed[entry.journal_reference] = (
            needed.get(entry.journal_reference, 0) + len(fragment.decode()) + 1
        )
    total = 0
    for reference, characters in needed.items():
        framing = len(orjson.dumps(knowledge_payload(reference, [], requested_by)).decode())
        total += -(-characters // (budget * CHARS_PER_TOKEN - framing + 1))
    return total


def _text(rng: random.Random, length: int) -> str:
    words = " ".join(rng.choices(WORDS, k=length // 3))
    return f'{words}\n"quoted" ünïcödé '[:length].ljust(length, ".")


async def _jobs(client: NatsClient, stream: str, job_ids: tuple[str, ...]) -> tuple[list[int], int]:
    """Each job's estimated tokens (on its payload text in the stream); the messages carried."""
    jetstream = client.jetstream()
    state = (await jetstream.stream_info(stream)).state
    wanted, tokens = set(job_ids), []
    carried: set[tuple[str, int]] = set()
    for sequence in range(state.first_seq, state.last_seq + 1):
        envelope = orjson.loads((await jetstream.get_msg(stream, sequence)).data or b"{}")
        if envelope["job_id"] in wanted:
            payload = envelope["payload"]
            tokens.append(estimate_tokens(orjson.dumps(payload).decode()))
            reference = payload["journal_reference"]
            carried.update((reference, message["sequence"]) for message in payload["messages"])
    return tokens, len(carried)
