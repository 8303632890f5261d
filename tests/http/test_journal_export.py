"""``/api/journal/{reference}/export``: the whole day as Markdown or JSON, tool calls included."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest
from auth_support import AiohttpClient
from journal_support import REFERENCE, Reader, answer, reader, start_journal

from exobrain.actors.journal import NewToolCall
from exobrain.config import Settings

EXPORT = f"/api/journal/{REFERENCE}/export"


@pytest.fixture
async def alice(aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]) -> Reader:
    alice = await reader(await start_journal(aiohttp_client, make_settings))
    await alice.write(
        REFERENCE,
        "What is new on sleep research?",
        answer(
            "Sleep helps memory.",
            NewToolCall("call_1", "Web search", "Searching for sleep", response="Found 3"),
            NewToolCall("call_2", "Web fetch", "Fetching a review", error="timed out"),
        ),
    )
    await alice.write(REFERENCE, *(f"line {n}" for n in range(3, 151)))  # beyond one page
    return alice


async def test_markdown_download(alice: Reader) -> None:
    response = await alice.get(EXPORT)
    assert response.status == 200
    assert response.content_type == "text/markdown"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="journal-2025-01-14.md"'
    )
    text = await response.text()
    assert text.startswith(f"# Journal {REFERENCE}\n")
    assert "## 1. user · " in text
    assert "What is new on sleep research?" in text
    assert "## 2. assistant · " in text
    assert (
        "> **Tool call** `call_1`: Web search\n> Searching for sleep\n> Response: Found 3\n"
    ) in text
    assert "> **Tool call** `call_2`: Web fetch\n> Fetching a review\n> Error: timed out\n" in text
    assert text.index("call_1") < text.index("call_2") < text.index("## 3. user")
    assert "## 150. user · " in text


async def test_json_download(alice: Reader) -> None:
    response = await alice.get(EXPORT, format="json")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="journal-2025-01-14.json"'
    )
    body = orjson.loads(await response.read())
    assert body["entry"] == await alice.json(f"/api/journal/{REFERENCE}")
    assert [m["sequence"] for m in body["messages"]] == list(range(1, 151))
    calls = body["messages"][1]["tool_calls"]
    assert [(c["tool_call_id"], c["response"], c["error"]) for c in calls] == [
        ("call_1", "Found 3", None),
        ("call_2", None, "timed out"),
    ]
    page = await alice.json(f"/api/journal/{REFERENCE}/messages", limit=500)
    assert body["messages"] == page[::-1]  # the same messages as the API serves


async def test_export_of_a_missing_day_or_bad_format(alice: Reader) -> None:
    assert (await alice.get("/api/journal/2025/01/15/export")).status == 404
    response = await alice.get(EXPORT, format="pdf")
    assert response.status == 422
    [problem] = (await response.json())["detail"]
    assert (problem["loc"], problem["type"]) == (["query", "format"], "literal_error")
