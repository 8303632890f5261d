"""``/api/journal``: entries, today, message pages, routing and isolation, over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from auth_support import AiohttpClient
from journal_support import REFERENCE, Reader, answer, reader, start_journal

from exobrain.actors.journal import NewToolCall
from exobrain.config import Settings
from exobrain.http.resources import PG_POOL


@pytest.fixture
async def alice(aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]) -> Reader:
    return await reader(await start_journal(aiohttp_client, make_settings))


def today() -> str:
    return datetime.now(UTC).strftime("%Y/%m/%d")


async def test_every_route_needs_authentication(alice: Reader) -> None:
    await alice.write(REFERENCE, "hello")
    for path in (
        "/api/journal",
        "/api/journal/today",
        "/api/journal/today/messages",
        "/api/journal/search?q=hello",
        f"/api/journal/{REFERENCE}",
        f"/api/journal/{REFERENCE}/messages",
        f"/api/journal/{REFERENCE}/export",
    ):
        response = await alice.client.get(path)
        assert response.status == 401, path
        assert await response.json() == {"detail": "authentication required"}


async def test_entries_newest_first_with_cursor_pages(alice: Reader) -> None:
    references = [f"2025/03/{day:02}" for day in range(1, 8)]
    for reference in references:
        await alice.write(reference, f"note of {reference}", f"second note of {reference}")
    response = await alice.get("/api/journal", limit=3)
    assert response.status == 200
    first = await response.json()
    assert [entry["reference"] for entry in first] == references[::-1][:3]
    assert set(first[0]) == {
        "id",
        "reference",
        "created_at",
        "updated_at",
        "last_message_at",
        "message_count",
        "status",
    }
    assert first[0]["message_count"] == 2
    assert first[0]["status"] == "active"
    assert first[0]["last_message_at"].endswith("Z")
    seen = [entry["reference"] for entry in first]
    cursor = response.headers["X-Next-Cursor"]
    assert cursor == references[-3]
    while cursor:
        response = await alice.get("/api/journal", limit=3, cursor=cursor)
        seen += [entry["reference"] for entry in await response.json()]
        cursor = response.headers.get("X-Next-Cursor", "")
    assert seen == references[::-1]
    assert await alice.json("/api/journal", cursor="2025/03/01") == []


async def test_one_entry_by_reference_with_or_without_encoded_slashes(alice: Reader) -> None:
    [stored] = await alice.write(REFERENCE, "hello")
    entry = await alice.json(f"/api/journal/{REFERENCE}")
    assert entry["reference"] == REFERENCE
    assert entry["id"] == str(stored.conversation_id)
    assert await alice.json("/api/journal/2025%2F01%2F14") == entry
    missing = await alice.get("/api/journal/2025/01/15")
    assert missing.status == 404
    assert await missing.json() == {"detail": "journal not found"}


async def test_today_is_404_until_created_and_creation_is_race_free(alice: Reader) -> None:
    missing = await alice.get("/api/journal/today")
    assert missing.status == 404
    assert (await alice.get("/api/journal/today", create="false")).status == 404
    assert (await alice.get("/api/journal/today/messages")).status == 404
    assert [e["reference"] for e in await alice.json("/api/journal")] == []

    created = await asyncio.gather(
        *(alice.json("/api/journal/today", create="true") for _ in range(8))
    )
    assert {entry["id"] for entry in created} == {created[0]["id"]}
    assert created[0]["reference"] == today()
    assert created[0]["message_count"] == 0
    assert await alice.json("/api/journal/today") == created[0]
    assert [e["reference"] for e in await alice.json("/api/journal")] == [today()]
    assert await alice.json("/api/journal/today/messages") == []

    await alice.write(today(), "first words of the day")
    [message] = await alice.json("/api/journal/today/messages")
    assert message["content"] == "first words of the day"


async def test_messages_newest_first_with_tool_calls_in_order(alice: Reader) -> None:
    calls = (
        NewToolCall("call_b", "Web search", "Searching for b", response="Found 2"),
        NewToolCall("call_a", "Web fetch", "Fetching a", error="timed out"),
    )
    stored = await alice.write(REFERENCE, "question", answer("reply", *calls))
    body = await alice.json(f"/api/journal/{REFERENCE}/messages")
    assert [m["sequence"] for m in body] == [2, 1]
    reply, question = body
    assert set(reply) == {
        "id",
        "role",
        "content",
        "sequence",
        "created_at",
        "metadata",
        "tool_calls",
    }
    assert reply["id"] == str(stored[1].id)
    assert (reply["role"], reply["content"], reply["metadata"]) == (
        "assistant",
        "reply",
        {"model": "agent"},
    )
    assert [
        {key: call[key] for key in ("tool_call_id", "title", "description", "response", "error")}
        for call in reply["tool_calls"]
    ] == [
        {
            "tool_call_id": "call_b",
            "title": "Web search",
            "description": "Searching for b",
            "response": "Found 2",
            "error": None,
        },
        {
            "tool_call_id": "call_a",
            "title": "Web fetch",
            "description": "Fetching a",
            "response": None,
            "error": "timed out",
        },
    ]
    assert all(call["id"] for call in reply["tool_calls"])
    assert question["tool_calls"] == []
    assert question["metadata"] == {}


async def test_250_messages_paged_by_40_to_the_end_and_back(alice: Reader) -> None:
    for start in range(0, 250, 50):
        await alice.write(REFERENCE, *(f"message {n}" for n in range(start + 1, start + 51)))
    path = f"/api/journal/{REFERENCE}/messages"
    pages: list[tuple[str | None, list[int]]] = []
    cursor: str | None = None
    while True:
        response = await alice.get(path, limit=40, **({"cursor": cursor} if cursor else {}))
        assert response.status == 200
        pages.append((cursor, [m["sequence"] for m in await response.json()]))
        cursor = response.headers.get("X-Next-Cursor")
        if cursor is None:
            break
    assert [len(sequences) for _, sequences in pages] == [40] * 6 + [10]
    assert [s for _, sequences in pages for s in sequences] == list(range(250, 0, -1))
    for cursor, sequences in reversed(pages):  # back: each page again, by its cursor
        params = {"cursor": cursor} if cursor else {}
        again = await alice.json(path, limit=40, **params)
        assert [m["sequence"] for m in again] == sequences
    assert await alice.json(path, limit=40, cursor=1) == []


async def test_fixed_paths_are_not_taken_for_references(alice: Reader) -> None:
    await alice.write(today(), "searchable words")
    assert (await alice.get("/api/journal/search", q="searchable")).status == 200
    assert (await alice.json("/api/journal/today"))["reference"] == today()
    assert len(await alice.json("/api/journal/today/messages")) == 1
    for path in ("/api/journal/yesterday", "/api/journal/search/messages"):
        response = await alice.get(path)
        assert response.status == 422, path
        assert (await response.json())["detail"][0]["loc"] == ["path", "reference"]


async def test_two_users_with_the_same_reference_see_only_their_own(alice: Reader) -> None:
    bob = await reader(alice.client)
    await alice.write(REFERENCE, "alice's secret", answer("for alice", NewToolCall("c1", "T")))
    await bob.write(REFERENCE, "bob's note")
    await alice.write("2025/01/13", "only alice has this day")

    assert [m["content"] for m in await bob.json(f"/api/journal/{REFERENCE}/messages")] == [
        "bob's note"
    ]
    bob_entry = await bob.json(f"/api/journal/{REFERENCE}")
    alice_entry = await alice.json(f"/api/journal/{REFERENCE}")
    assert bob_entry["id"] != alice_entry["id"]
    assert (bob_entry["message_count"], alice_entry["message_count"]) == (1, 2)
    assert [e["reference"] for e in await bob.json("/api/journal")] == [REFERENCE]
    for path in ("/api/journal/2025/01/13", "/api/journal/2025/01/13/messages"):
        assert (await bob.get(path)).status == 404, path
    assert (await bob.get("/api/journal/2025/01/13/export")).status == 404
    assert await bob.json("/api/journal/search", q="secret") == []
    assert await bob.json("/api/journal/search", q="2025/01/13") == []
    assert [h["reference"] for h in await alice.json("/api/journal/search", q="secret")] == [
        REFERENCE
    ]


async def test_a_message_owned_by_someone_else_never_shows_in_a_page(alice: Reader) -> None:
    """Defence in depth: pages check each message's owner, not only the journal's."""
    bob = await reader(alice.client)
    stray, _ = await alice.write(REFERENCE, "stray", "kept")
    await alice.client.app[PG_POOL].execute(
        "UPDATE messages SET user_id = $1 WHERE id = $2", bob.user_id, stray.id
    )
    page = await alice.json(f"/api/journal/{REFERENCE}/messages")
    assert [m["content"] for m in page] == ["kept"]
    assert (await bob.get(f"/api/journal/{REFERENCE}/messages")).status == 404
