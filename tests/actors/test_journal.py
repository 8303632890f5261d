"""The JournalActor against real PostgreSQL: group commit, sequences, idempotency, failures."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from exobrain.actors.journal import (
    AppendMessages,
    Fenced,
    JournalChanged,
    NewMessage,
    NewToolCall,
    StoredMessage,
    append,
)
from exobrain.actors.journal.store import write_batch
from exobrain.cluster import Leases
from exobrain.config import Settings
from exobrain.embedded import EmbeddedServer
from exobrain.http import create_app
from exobrain.http.actors import JOURNAL, JOURNAL_LISTENERS, METRICS
from exobrain.http.resources import PG_POOL, REDIS, SETTINGS

AiohttpClient = Callable[..., Any]
REFERENCE = "2026/11/24"


async def start(aiohttp_client: AiohttpClient, settings: Settings) -> web.Application:
    client: TestClient[web.Request, web.Application] = await aiohttp_client(create_app(settings))
    assert client.app is not None
    return client.app


async def new_user(pool: asyncpg.Pool) -> uuid.UUID:
    user_id: uuid.UUID = await pool.fetchval(
        "INSERT INTO users (email, name) VALUES ($1, 'Writer') RETURNING id",
        f"{uuid.uuid4()}@journal.test",
    )
    return user_id


def say(content: str, client_id: uuid.UUID | None = None, role: str = "user") -> NewMessage:
    return NewMessage(role, content, client_message_id=client_id)  # type: ignore[arg-type]


async def write(
    app: web.Application, user_id: uuid.UUID, *messages: NewMessage
) -> tuple[StoredMessage, ...]:
    return await append(app[JOURNAL], AppendMessages(user_id, REFERENCE, messages), timeout=10)


@pytest.fixture
async def app(aiohttp_client: AiohttpClient, settings: Settings) -> web.Application:
    return await start(aiohttp_client, settings)


async def stored_sequences(pool: asyncpg.Pool, user_id: uuid.UUID) -> list[int]:
    rows = await pool.fetch(
        "SELECT m.sequence FROM messages m JOIN conversations c ON c.id = m.conversation_id"
        " WHERE c.user_id = $1 AND c.reference = $2 ORDER BY m.sequence",
        user_id,
        REFERENCE,
    )
    return [row["sequence"] for row in rows]


async def test_reply_comes_after_commit_with_ids_and_sequences(app: web.Application) -> None:
    pool = app[PG_POOL]
    user_id = await new_user(pool)
    stored = await write(app, user_id, say("hello"), say("hi there", role="assistant"))
    assert [message.sequence for message in stored] == [1, 2]
    rows = await pool.fetch(
        "SELECT id, role, content, sequence FROM messages WHERE id = ANY($1::uuid[])"
        " ORDER BY sequence",
        [message.id for message in stored],
    )
    assert [(r["id"], r["role"], r["content"], r["sequence"]) for r in rows] == [
        (stored[0].id, "user", "hello", 1),
        (stored[1].id, "assistant", "hi there", 2),
    ]
    journal = await pool.fetchrow(
        "SELECT message_count, last_sequence, last_message_at FROM conversations"
        " WHERE user_id = $1 AND reference = $2",
        user_id,
        REFERENCE,
    )
    assert journal is not None
    assert (journal["message_count"], journal["last_sequence"]) == (2, 2)
    assert journal["last_message_at"] is not None


async def test_twenty_concurrent_writers_get_gap_free_unique_sequences(
    app: web.Application,
) -> None:
    pool = app[PG_POOL]
    user_id = await new_user(pool)
    results = await asyncio.gather(
        *(write(app, user_id, say(f"writer {n}"), say(f"writer {n} again")) for n in range(20))
    )
    sequences = sorted(message.sequence for stored in results for message in stored)
    assert sequences == list(range(1, 41))
    for stored in results:  # each command's messages stay together and in order
        assert stored[1].sequence == stored[0].sequence + 1
    assert await stored_sequences(pool, user_id) == list(range(1, 41))
    [batches] = app[METRICS].journal_batch_size.collect()
    count = next(sample.value for sample in batches.samples if sample.name.endswith("_count"))
    assert count < 20  # concurrent appends were grouped into fewer transactions


async def test_two_journal_writers_on_one_database_never_collide(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    first = await start(aiohttp_client, make_settings())
    second = await start(aiohttp_client, make_settings(exobrain_state_dir=tmp_path / "second"))
    user_id = await new_user(first[PG_POOL])
    await asyncio.gather(
        *(write(app, user_id, say(f"from {n}")) for n in range(30) for app in (first, second))
    )
    assert await stored_sequences(first[PG_POOL], user_id) == list(range(1, 61))


async def test_a_repeated_client_message_id_returns_the_original_row(
    app: web.Application,
) -> None:
    pool = app[PG_POOL]
    user_id = await new_user(pool)
    client_id = uuid.uuid4()
    [original] = await write(app, user_id, say("once", client_id))
    [again] = await write(app, user_id, say("changed text is ignored", client_id))
    assert again.duplicate
    assert (again.id, again.sequence) == (original.id, original.sequence)
    concurrent = await asyncio.gather(
        *(write(app, user_id, say("racing", uuid.uuid4())) for _ in range(3))
    )
    same = uuid.uuid4()
    repeats = await asyncio.gather(*(write(app, user_id, say("same", same)) for _ in range(5)))
    assert len({stored[0].id for stored in repeats}) == 1
    assert sum(not stored[0].duplicate for stored in repeats) == 1
    contents = await pool.fetch(
        "SELECT content FROM messages WHERE client_message_id = $1", client_id
    )
    assert [row["content"] for row in contents] == ["once"]
    assert await stored_sequences(pool, user_id) == list(range(1, 2 + len(concurrent) + 1))


async def test_one_batch_repeating_a_client_message_id_stores_it_once(
    app: web.Application,
) -> None:
    pool = app[PG_POOL]
    user_id = await new_user(pool)
    repeated = uuid.uuid4()
    outcomes = await write_batch(
        pool,
        [
            AppendMessages(user_id, REFERENCE, (say("first", repeated), say("plain"))),
            AppendMessages(user_id, REFERENCE, (say("repeat", repeated),)),
            AppendMessages(user_id, "2026/11/25", (say("elsewhere", repeated),)),
        ],
    )
    assert not any(isinstance(outcome, Exception) for outcome in outcomes)
    [(first, plain), (repeat,), (elsewhere,)] = outcomes  # type: ignore[misc]
    assert (first.sequence, plain.sequence, first.duplicate) == (1, 2, False)
    assert (repeat.id, repeat.sequence, repeat.duplicate) == (first.id, 1, True)
    assert (elsewhere.sequence, elsewhere.duplicate) == (1, False)  # another journal's id space
    assert await stored_sequences(pool, user_id) == [1, 2]


async def test_tool_calls_and_metadata_are_stored_in_order(app: web.Application) -> None:
    pool = app[PG_POOL]
    user_id = await new_user(pool)
    calls = (
        NewToolCall("call_1", "Web search", "Searching the web for x", response="Found 2"),
        NewToolCall("call_2", "Web fetch", "Looking at https://e.x", error="timed out"),
    )
    [stored] = await write(
        app,
        user_id,
        NewMessage("assistant", "answer", metadata={"model": "agent"}, tool_calls=calls),
    )
    rows = await pool.fetch(
        "SELECT tool_call_id, title, response, error FROM tool_calls WHERE message_id = $1"
        " ORDER BY position",
        stored.id,
    )
    assert [tuple(row) for row in rows] == [
        ("call_1", "Web search", "Found 2", None),
        ("call_2", "Web fetch", None, "timed out"),
    ]
    metadata = await pool.fetchval("SELECT metadata FROM messages WHERE id = $1", stored.id)
    assert metadata == {"model": "agent"}


async def test_a_bad_record_fails_only_its_own_caller(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    app = await start(aiohttp_client, make_settings(journal_batch_max_delay_ms=50))
    pool = app[PG_POOL]
    user_id = await new_user(pool)
    ghost = uuid.uuid4()  # no such user: its journal breaks a foreign key
    outcomes = await asyncio.gather(
        write(app, user_id, say("good 1")),
        write(app, ghost, say("orphan")),
        write(app, user_id, say("good 2")),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], asyncpg.ForeignKeyViolationError)
    assert not isinstance(outcomes[0], BaseException)
    assert not isinstance(outcomes[2], BaseException)
    assert await stored_sequences(pool, user_id) == [1, 2]
    assert await pool.fetchval("SELECT count(*) FROM messages WHERE user_id = $1", ghost) == 0


async def test_commits_are_announced_per_journal(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    heard: list[JournalChanged] = []

    async def hear(event: JournalChanged) -> None:
        heard.append(event)

    app = create_app(settings)
    app[JOURNAL_LISTENERS].append(hear)
    await aiohttp_client(app)
    user_id = await new_user(app[PG_POOL])
    client_id = uuid.uuid4()
    await write(app, user_id, say("news", client_id))
    await write(app, user_id, say("news", client_id))  # a duplicate changes nothing
    await append(
        app[JOURNAL],
        AppendMessages(user_id, "2026/11/25", (say("tomorrow"),)),
        timeout=10,
    )
    assert heard == [
        JournalChanged(frozenset({(user_id, REFERENCE)})),
        JournalChanged(frozenset({(user_id, "2026/11/25")})),
    ]


def test_invalid_commands_fail_at_the_caller() -> None:
    with pytest.raises(ValueError, match="YYYY/MM/DD"):
        AppendMessages(uuid.uuid4(), "2026-11-24", (say("x"),))
    with pytest.raises(ValueError, match="nothing to append"):
        AppendMessages(uuid.uuid4(), REFERENCE, ())
    with pytest.raises(ValueError, match="role"):
        say("x", role="robot")


@pytest.fixture
async def private_app(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    private_server: Callable[[str], EmbeddedServer],
) -> tuple[web.Application, EmbeddedServer]:
    postgres = private_server("postgres")
    app = await start(
        aiohttp_client,
        make_settings(assistant_db_dsn=postgres.url, journal_write_timeout_seconds=5),
    )
    return app, postgres


@pytest.mark.fault
async def test_postgres_down_fails_exactly_that_batch_then_recovers(
    private_app: tuple[web.Application, EmbeddedServer],
) -> None:
    app, postgres = private_app
    pool = app[PG_POOL]
    user_id = await new_user(pool)
    await write(app, user_id, say("before"))

    await asyncio.to_thread(postgres.stop)
    outcomes = await asyncio.gather(
        *(write(app, user_id, say(f"during {n}")) for n in range(5)), return_exceptions=True
    )
    assert all(isinstance(outcome, Exception) for outcome in outcomes), outcomes

    await asyncio.to_thread(postgres.start)
    for _ in range(100):  # the pool reconnects on its own schedule
        try:
            [after] = await write(app, user_id, say("after"))
            break
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            await asyncio.sleep(0.1)
    assert after.sequence == 2  # nothing from the failed batch was stored
    rows = await pool.fetch(
        "SELECT content FROM messages WHERE user_id = $1 ORDER BY sequence", user_id
    )
    assert [row["content"] for row in rows] == ["before", "after"]


async def test_a_write_with_a_stale_ownership_epoch_is_refused_alone(app: web.Application) -> None:
    """The fence of a taken-over chat session: the database refuses its writes, and only
    its journal's, in a batch shared with other users."""
    pool = app[PG_POOL]
    owner, bystander = await new_user(pool), await new_user(pool)
    prefix = f"{app[SETTINGS].redis_key_prefix}{uuid.uuid4()}:"
    leases = Leases(app[REDIS], pool, key_prefix=prefix, instance_id="a", ttl=30)
    acquired = await leases.acquire(owner)
    assert acquired is not None
    await leases.release([owner])
    taken_over = await leases.acquire(owner)  # a takeover: the epoch moved on
    assert taken_over is not None
    first, second = acquired.epoch, taken_over.epoch
    assert second == first + 1
    outcomes = await write_batch(
        pool,
        [
            AppendMessages(owner, REFERENCE, (say("from the ex-owner"),), epoch=first),
            AppendMessages(bystander, REFERENCE, (say("unfenced"),)),
            AppendMessages(owner, REFERENCE, (say("from the owner"),), epoch=second),
        ],
    )
    assert isinstance(outcomes[0], Fenced)
    assert isinstance(outcomes[1], tuple)
    assert isinstance(outcomes[2], Fenced)  # the journal as a whole is written, or not
    assert await stored_sequences(pool, owner) == []
    [stored] = await write(app, owner, say("from the owner, alone"))
    assert stored.sequence == 1
