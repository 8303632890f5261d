"""The journal's group commit against one INSERT transaction per message, and the loop bridge.

In-process (``--dsn``): the JournalActor runs as the service runs it, under an
actor system on this process's event loop, against the given PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import asyncpg

from exobrain.actors.journal import AppendMessages, NewMessage, append, journal_spec
from exobrain.config import load_settings
from exobrain.metrics import Metrics
from exobrain.store import create_pool, migrate
from exobrain.supervision import ActorSystem, ChildSpec, Intensity, SupervisedActor, ask

from .load import closed_loop
from .registry import Options, benchmark
from .stats import Summary, summarize

WRITERS = (1, 16, 128)
#: Message sizes vary like chat turns do; the text is what PostgreSQL must store.
CONTENT = "A journal line with enough words to look like a chat message. " * 4


@benchmark("journal")
async def journal(session: aiohttp.ClientSession, options: Options) -> list[Summary]:
    """Append throughput and reply latency with 1, 16 and 128 writers, group commit vs naive."""
    if options.dsn is None:
        raise SystemExit("the journal benchmark needs --dsn or ASSISTANT_DB_DSN")
    await migrate(options.dsn)
    settings = load_settings(assistant_db_dsn=options.dsn)
    pool = await create_pool(settings)
    system = await asyncio.to_thread(
        ActorSystem,
        [journal_spec(settings, pool, asyncio.get_running_loop(), Metrics())],
        intensity=Intensity(),
    )
    handle = system.handle("journal")
    results = []
    try:
        for writers in WRITERS:
            total = max(2000, writers * 40)
            users = await _users(pool, writers)
            results.append(
                await _appends(
                    f"journal group c={writers}",
                    lambda user: append(handle, _command(user), timeout=30),
                    users,
                    total,
                )
            )
            users = await _users(pool, writers)
            results.append(
                await _appends(
                    f"journal naive c={writers}",
                    lambda user: _naive_insert(pool, user),
                    users,
                    total,
                )
            )
    finally:
        await asyncio.to_thread(system.stop, 10)
        await pool.close()
    return results


class _Echo(SupervisedActor):
    def on_receive(self, message: Any) -> Any:
        return message


@benchmark("bridge")
async def bridge(session: aiohttp.ClientSession, options: Options) -> list[Summary]:
    """Loop → actor → loop round trips through the bridge, 1 and 64 in flight."""
    system = await asyncio.to_thread(
        ActorSystem, [ChildSpec("echo", _Echo.start)], intensity=Intensity()
    )
    handle = system.handle("echo")

    async def round_trip() -> bool:
        return bool(await ask(handle.ref, 1, timeout=5) == 1)

    try:
        return [
            await closed_loop(f"bridge in-flight={n}", round_trip, total=50_000, concurrency=n)
            for n in (1, 64)
        ]
    finally:
        await asyncio.to_thread(system.stop, 10)


def _command(user_id: uuid.UUID) -> AppendMessages:
    return AppendMessages(user_id, "2026/11/24", (NewMessage("user", CONTENT),))


async def _users(pool: asyncpg.Pool, count: int) -> list[uuid.UUID]:
    rows = await pool.fetch(
        "INSERT INTO users (email, name) SELECT 'bench-' || gen_random_uuid() || '@bench', 'Bench'"
        " FROM generate_series(1, $1) RETURNING id",
        count,
    )
    return [row["id"] for row in rows]


async def _appends(name: str, write: Any, users: list[uuid.UUID], total: int) -> Summary:
    """``len(users)`` writers, each into its own journal, ``total`` appends in all."""
    queue = iter(range(total))
    latencies: list[float] = []

    async def writer(user: uuid.UUID) -> None:
        for _ in queue:
            started = time.perf_counter()
            await write(user)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(writer(user) for user in users))
    return summarize(name, latencies, concurrency=len(users), seconds=time.perf_counter() - started)


async def _naive_insert(pool: asyncpg.Pool, user_id: uuid.UUID) -> None:
    """What a handler without the actor would do: one transaction per message."""
    async with pool.acquire() as connection, connection.transaction():
        conversation = await connection.fetchrow(
            """
            INSERT INTO conversations (user_id, reference, last_sequence, message_count)
            VALUES ($1, '2026/11/24', 1, 1)
            ON CONFLICT (user_id, reference) DO UPDATE
            SET last_sequence = conversations.last_sequence + 1,
                message_count = conversations.message_count + 1, last_message_at = now()
            RETURNING id, last_sequence
            """,
            user_id,
        )
        assert conversation is not None
        await connection.execute(
            "INSERT INTO messages (conversation_id, user_id, role, content, sequence)"
            " VALUES ($1, $2, 'user', $3, $4)",
            conversation["id"],
            user_id,
            CONTENT,
            conversation["last_sequence"],
        )
