"""The journal read cache: exact invalidation by the JournalActor, single-flight, Redis faults."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
import redis.asyncio as redis
from auth_support import AiohttpClient
from journal_support import REFERENCE, Reader, answer, reader, start_journal

from exobrain.actors.journal import NewToolCall
from exobrain.config import Settings
from exobrain.embedded import EmbeddedServer
from exobrain.http.journal.routes import JOURNAL_CACHE
from exobrain.http.resources import REDIS, SETTINGS
from exobrain.journal_cache import JournalCache, Page

MESSAGES = f"/api/journal/{REFERENCE}/messages"


@pytest.fixture
async def alice(aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]) -> Reader:
    return await reader(await start_journal(aiohttp_client, make_settings))


async def served(alice: Reader, path: str, **params: object) -> tuple[str, object]:
    """(X-Cache, body) of a successful GET."""
    response = await alice.get(path, **params)
    assert response.status == 200, await response.text()
    return response.headers["X-Cache"], await response.json()


async def contents(alice: Reader, **params: object) -> tuple[str, list[str]]:
    outcome, body = await served(alice, MESSAGES, **params)
    assert isinstance(body, list)
    return outcome, [message["content"] for message in body]


async def test_a_page_is_cached_and_a_committed_write_is_seen_at_once(alice: Reader) -> None:
    await alice.write(REFERENCE, "one")
    assert await contents(alice) == ("miss", ["one"])
    assert await contents(alice) == ("hit", ["one"])
    for n in range(2, 12):  # every acknowledged write is in the very next read
        await alice.write(REFERENCE, f"message {n}")
        outcome, seen = await contents(alice)
        assert (outcome, seen[0]) == ("miss", f"message {n}")
        assert await contents(alice) == ("hit", seen)


async def test_tool_calls_invalidate_too(alice: Reader) -> None:
    await alice.write(REFERENCE, "question")
    await contents(alice)
    await alice.write(REFERENCE, answer("searched", NewToolCall("call_1", "Web search")))
    outcome, body = await served(alice, MESSAGES)
    assert outcome == "miss"
    assert isinstance(body, list)
    assert [call["tool_call_id"] for call in body[0]["tool_calls"]] == ["call_1"]


async def test_entries_and_entry_pages_follow_writes(alice: Reader) -> None:
    await alice.write(REFERENCE, "one")
    for _ in range(2):
        await served(alice, "/api/journal")
        await served(alice, f"/api/journal/{REFERENCE}")
    assert (await served(alice, "/api/journal"))[0] == "hit"
    await alice.write(REFERENCE, "two")
    await alice.write("2025/01/15", "next day")
    outcome, entries = await served(alice, "/api/journal")
    assert outcome == "miss"
    assert isinstance(entries, list)
    assert [(e["reference"], e["message_count"]) for e in entries] == [
        ("2025/01/15", 1),
        (REFERENCE, 2),
    ]
    outcome, entry = await served(alice, f"/api/journal/{REFERENCE}")
    assert outcome == "miss"
    assert isinstance(entry, dict)
    assert entry["message_count"] == 2


async def test_only_the_changed_journal_is_invalidated(alice: Reader) -> None:
    bob = await reader(alice.client)
    await alice.write(REFERENCE, "alice")
    await bob.write(REFERENCE, "bob")
    await alice.write("2025/01/13", "alice earlier")
    for who in (alice, bob):
        await contents(who)
    await served(alice, "/api/journal/2025/01/13/messages")
    await alice.write(REFERENCE, "alice again")
    assert (await contents(bob))[0] == "hit"
    assert (await served(alice, "/api/journal/2025/01/13/messages"))[0] == "hit"
    assert await contents(alice) == ("miss", ["alice again", "alice"])


async def test_concurrent_readers_and_writers_never_see_an_acknowledged_write_missing(
    alice: Reader,
) -> None:
    await alice.write(REFERENCE, "start")

    async def keep_reading(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await contents(alice)

    stop = asyncio.Event()
    readers = [asyncio.create_task(keep_reading(stop)) for _ in range(4)]
    try:
        for n in range(30):
            await alice.write(REFERENCE, f"write {n}")
            assert (await contents(alice))[1][0] == f"write {n}"
    finally:
        stop.set()
        await asyncio.gather(*readers)


async def test_a_hit_answers_the_misses_bytes_and_headers(alice: Reader) -> None:
    await alice.write(REFERENCE, "one", "two", "three")
    answers = []
    for _ in range(2):
        response = await alice.get(MESSAGES, limit=2)
        answers.append((response.headers.copy(), await response.read()))
    (miss, miss_body), (hit, hit_body) = answers
    assert (miss["X-Cache"], hit["X-Cache"]) == ("miss", "hit")
    assert hit_body == miss_body
    for name in ("Content-Type", "Content-Length", "X-Next-Cursor"):
        assert hit[name] == miss[name], name
    assert miss["X-Next-Cursor"] == "2"

    # Another process keeps no copy: it reads the page from Redis, the same.
    app = alice.client.app
    settings = app[SETTINGS]
    elsewhere = JournalCache(
        app[REDIS], prefix=settings.redis_key_prefix, ttl=60, timeout=1, retry=1
    )

    async def unreachable() -> Page:
        raise AssertionError("a stored page was loaded again")

    page, outcome = await elsewhere.page(alice.user_id, REFERENCE, "messages:2:", unreachable)
    assert outcome == "hit"
    assert page == Page(miss_body, "2")


async def test_readers_sharing_a_round_each_get_their_own_pages(alice: Reader) -> None:
    bob = await reader(alice.client)
    await alice.write(REFERENCE, "alice's")
    await bob.write(REFERENCE, "bob's")
    await alice.write("2025/01/13", "alice's earlier")
    reads = [
        (who, reference)
        for _ in range(10)
        for who, reference in ((alice, REFERENCE), (bob, REFERENCE), (alice, "2025/01/13"))
    ]
    for _ in range(2):  # cold, then warm
        seen = await asyncio.gather(
            *(served(who, f"/api/journal/{reference}/messages") for who, reference in reads)
        )
        for (who, reference), (_, body) in zip(reads, seen, strict=True):
            assert isinstance(body, list)
            expected = {REFERENCE: "alice's", "2025/01/13": "alice's earlier"}[reference]
            assert [m["content"] for m in body] == ["bob's" if who is bob else expected]
    assert {outcome for outcome, _ in seen} == {"hit"}


async def test_pages_live_under_the_key_prefix_with_a_jittered_ttl(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    alice = await reader(
        await start_journal(aiohttp_client, make_settings, journal_cache_ttl_seconds=100)
    )
    await alice.write(REFERENCE, "one")
    await contents(alice, limit=7)
    app = alice.client.app
    prefix = app[SETTINGS].redis_key_prefix
    keys = [key.decode() async for key in app[REDIS].scan_iter(match=f"{prefix}journal:*")]
    [page] = [key for key in keys if key.endswith(":messages:7:")]
    assert page.startswith(f"{prefix}journal:{alice.user_id}:{REFERENCE}:")
    assert 90 <= await app[REDIS].ttl(page) <= 110


async def test_disabled_cache_is_bypassed(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    alice = await reader(
        await start_journal(aiohttp_client, make_settings, journal_cache_enabled=False)
    )
    await alice.write(REFERENCE, "one")
    assert await contents(alice) == ("bypass", ["one"])
    assert await contents(alice) == ("bypass", ["one"])


async def test_a_cold_page_under_load_is_loaded_once(alice: Reader) -> None:
    cache = alice.client.app[JOURNAL_CACHE]
    loads = 0
    release = asyncio.Event()

    async def load() -> Page:
        nonlocal loads
        loads += 1
        await release.wait()
        return Page(b"[]")

    readers = [
        asyncio.create_task(cache.page(alice.user_id, REFERENCE, "single-flight", load))
        for _ in range(20)
    ]
    await asyncio.sleep(0.05)  # let the readers reach the cache (a late one would hit)
    release.set()
    results = await asyncio.gather(*readers)
    assert loads == 1
    assert {page for page, _ in results} == {Page(b"[]")}
    assert await cache.page(alice.user_id, REFERENCE, "single-flight", load) == (Page(b"[]"), "hit")


async def test_a_lost_generation_never_revives_old_pages(alice: Reader) -> None:
    await alice.write(REFERENCE, "one")
    await contents(alice)
    app = alice.client.app
    prefix = app[SETTINGS].redis_key_prefix
    await app[REDIS].delete(f"{prefix}journal:{alice.user_id}:{REFERENCE}")  # evicted
    assert (await contents(alice))[0] == "miss"


@pytest.fixture
async def cache_redis(
    private_server: Callable[[str], EmbeddedServer],
) -> EmbeddedServer:
    return private_server("redis")


async def start_with_cache_on(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], server: EmbeddedServer
) -> Reader:
    return await reader(
        await start_journal(
            aiohttp_client,
            make_settings,
            journal_cache_redis_url=server.url,
            journal_cache_retry_seconds=0.05,
        )
    )


@pytest.mark.fault
async def test_reads_survive_the_cache_redis_going_down_and_use_it_again_after(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    cache_redis: EmbeddedServer,
) -> None:
    alice = await start_with_cache_on(aiohttp_client, make_settings, cache_redis)
    await alice.write(REFERENCE, "before")
    await contents(alice)
    assert await contents(alice) == ("hit", ["before"])

    await asyncio.to_thread(cache_redis.stop)
    await alice.write(REFERENCE, "while down")  # its invalidation cannot reach Redis
    for _ in range(3):
        assert await contents(alice) == ("bypass", ["while down", "before"])
    assert [e["message_count"] for e in await alice.json("/api/journal")] == [2]

    await asyncio.to_thread(cache_redis.start)
    outcomes = []
    for _ in range(100):  # the client reconnects on its own schedule
        outcome, seen = await contents(alice)
        assert seen == ["while down", "before"]
        outcomes.append(outcome)
        if outcome == "hit":
            break
        await asyncio.sleep(0.05)
    assert outcomes[-2:] == ["miss", "hit"]


@pytest.mark.fault
async def test_an_invalidation_that_missed_redis_is_delivered_before_the_next_cached_read(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    cache_redis: EmbeddedServer,
) -> None:
    alice = await start_with_cache_on(aiohttp_client, make_settings, cache_redis)
    await alice.write(REFERENCE, "before")
    await contents(alice)
    admin = redis.Redis.from_url(cache_redis.url)
    try:
        await admin.client_pause(1500, all=True)  # the data stays
    finally:
        await admin.aclose()
    await alice.write(REFERENCE, "during the pause")  # its invalidation times out
    assert await contents(alice) == ("bypass", ["during the pause", "before"])
    for _ in range(100):
        outcome, seen = await contents(alice)
        assert seen == ["during the pause", "before"]
        if outcome != "bypass":
            break
        await asyncio.sleep(0.05)
    # The old page is still in Redis, under the old generation: it must not be served.
    assert outcome == "miss"
    assert await contents(alice) == ("hit", ["during the pause", "before"])


async def test_invalidation_never_raises_when_redis_is_unreachable() -> None:
    client = redis.Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2)
    cache = JournalCache(client, prefix="x:", ttl=10, timeout=0.5, retry=60)
    try:
        await cache.invalidate([(uuid.uuid4(), REFERENCE)])

        async def load() -> Page:
            return Page(b"[]")

        assert await cache.page(uuid.uuid4(), None, "entries", load) == (Page(b"[]"), "bypass")
    finally:
        await client.aclose()
