"""Chat sessions as actors: crashes, passivation, rebuilt context, tools and provider failures."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from auth_support import Account, Client, create_account, start
from test_chat import eventually_stored, parse_sse, send, signed_in

from exobrain.actors.session import SessionFor
from exobrain.actors.session.messages import TurnEvents
from exobrain.config import Settings
from exobrain.embedded import free_port
from exobrain.http.actors import SESSIONS
from exobrain.http.cluster import CLUSTER
from exobrain.http.knowledge.base import PASSAGES
from exobrain.http.resources import PG_POOL
from exobrain.knowledge import Passage
from exobrain.supervision import ask, tell

sys.path.insert(0, str(Path(__file__).parents[1] / "agent"))
from fake_provider import FakeProvider, Stream, serve, text, tool_calls

AiohttpClient = Callable[..., Any]


@pytest.fixture
async def provider() -> AsyncIterator[tuple[FakeProvider, str]]:
    fake = FakeProvider()
    async for url in serve(fake):
        yield fake, url


async def sessions_running(client: Client) -> list[str]:
    tree = await (await client.get("/api/ops/actors")).json()
    [sessions] = [child for child in tree["tree"]["children"] if child["name"] == "sessions"]
    return [session["name"] for session in sessions["children"]]


async def session_of(app: web.Application, account: Account) -> Any:
    """The user's session here, started if needed (this instance takes the user's lease)."""
    epoch = await app[CLUSTER].ownership.claim(account.user_id)
    assert epoch is not None
    return await ask(app[SESSIONS].ref, SessionFor(account.user_id, epoch), timeout=5)


async def test_a_crashed_session_ends_its_turn_and_spares_everyone_else(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    provider: tuple[FakeProvider, str],
) -> None:
    fake, url = provider
    fake.scripts += [
        Stream(text("Working on ", "it").chunks, stall_after=3),  # the victim's turn hangs
        text("Unaffected."),  # another user's turn
        text("Back again."),  # the victim's next turn, in a fresh session
    ]
    client = await start(
        aiohttp_client, make_settings, main_agent_use_mock=False, model_provider_base_url=url
    )
    victim, victim_headers = await signed_in(client)
    other, other_headers = await signed_in(client)
    stream_id = (await (await send(client, victim_headers, "first question")).json())["stream_id"]
    reader = await client.get(f"/api/chat/stream/{stream_id}", headers=victim_headers)
    while b"Working on " not in await reader.content.readline():
        pass

    crashed = await session_of(client.app, victim)
    tell(crashed, TurnEvents(uuid.uuid4(), ()))  # an unknown stream: the actor fails
    ending = parse_sse((await reader.content.read()).decode())
    assert [name for _, name, _ in ending][-2:] == ["error", "done"]
    assert ending[-2][2]["tool_call_id"] is None
    assert ending[-1][2] == {"reason": "error"}

    other_stream = (await (await send(client, other_headers, "hello")).json())["stream_id"]
    other_events = parse_sse(
        await (await client.get(f"/api/chat/stream/{other_stream}", headers=other_headers)).text()
    )
    assert other_events[-1][1:] == ("done", {"reason": "completed"})

    again = (await (await send(client, victim_headers, "second question")).json())["stream_id"]
    events = parse_sse(
        await (await client.get(f"/api/chat/stream/{again}", headers=victim_headers)).text()
    )
    assert events[-1][1:] == ("done", {"reason": "completed"})
    assert await session_of(client.app, victim) != crashed
    history = [m["content"] for m in fake.requests[-1]["messages"] if m["role"] != "system"]
    assert history[0] == "first question"  # the new session rebuilt the day from PostgreSQL
    assert history[-1] == "second question"
    rows = await eventually_stored(client, other, 2)
    assert rows[1]["content"] == "Unaffected."


async def test_idle_sessions_stop_and_come_back_with_their_day(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(
        aiohttp_client,
        make_settings,
        main_agent_use_mock=True,
        chat_session_idle_seconds=0.1,
        chat_stream_retention_seconds=0.1,
    )
    account, headers = await signed_in(client)
    first = (await (await send(client, headers, "before the nap")).json())["stream_id"]
    await client.get(f"/api/chat/stream/{first}", headers=headers)
    assert await sessions_running(client) == [str(account.user_id)]
    for _ in range(100):  # the ticker runs once a second
        if not await sessions_running(client):
            break
        await asyncio.sleep(0.1)
    assert await sessions_running(client) == []
    expired = await client.get(f"/api/chat/stream/{first}", headers=headers)
    assert expired.status == 404  # finished streams do not outlive their retention
    second = (await (await send(client, headers, "after the nap")).json())["stream_id"]
    events = parse_sse(
        await (await client.get(f"/api/chat/stream/{second}", headers=headers)).text()
    )
    assert events[-1][1:] == ("done", {"reason": "completed"})
    rows = await eventually_stored(client, account, 4)
    assert [row["sequence"] for row in rows] == [1, 2, 3, 4]


async def test_tool_calls_stream_and_are_stored_with_the_answer(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    provider: tuple[FakeProvider, str],
) -> None:
    fake, url = provider
    fake.scripts += [
        tool_calls(("call_1", "web_search", '{"query": "sleep"}')),
        text("Sleep helps memory."),
    ]
    client = await start(
        aiohttp_client,
        make_settings,
        main_agent_use_mock=False,
        model_provider_base_url=url,
        web_tools_use_mock=True,
    )
    account, headers = await signed_in(client)
    stream_id = (await (await send(client, headers, "does sleep help?")).json())["stream_id"]
    events = parse_sse(
        await (await client.get(f"/api/chat/stream/{stream_id}", headers=headers)).text()
    )
    assert [name for _, name, _ in events] == [
        "tool_call",
        "tool_response",
        "message_chunk",
        "done",
    ]
    assert events[0][2] == {
        "tool_call_id": "call_1",
        "title": "Web search",
        "description": "Searching the web for sleep",
    }
    assert events[1][2] == {"tool_call_id": "call_1", "message": "Found 3 candidate sources"}
    rows = await eventually_stored(client, account, 2)
    calls = await client.app[PG_POOL].fetch(
        "SELECT tool_call_id, title, description, response, error FROM tool_calls"
        " JOIN messages m ON m.id = tool_calls.message_id WHERE m.user_id = $1",
        account.user_id,
    )
    assert [tuple(call) for call in calls] == [
        ("call_1", "Web search", "Searching the web for sleep", "Found 3 candidate sources", None)
    ]
    assert rows[1]["content"] == "Sleep helps memory."
    assert rows[1]["metadata"]["usage"]["total_tokens"] == 18


async def test_an_unreachable_provider_ends_the_turn_in_plain_words(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}/v1"
    client = await start(
        aiohttp_client, make_settings, main_agent_use_mock=False, model_provider_base_url=nowhere
    )
    account, headers = await signed_in(client)
    stream_id = (await (await send(client, headers, "anyone there?")).json())["stream_id"]
    events = parse_sse(
        await (await client.get(f"/api/chat/stream/{stream_id}", headers=headers)).text()
    )
    assert events[-2][1:] == (
        "error",
        {"tool_call_id": None, "message": "the model provider is unreachable"},
    )
    assert events[-1][1:] == ("done", {"reason": "error"})
    rows = await eventually_stored(client, account, 2)
    assert rows[1]["metadata"]["status"] == "error"
    followup = (await (await send(client, headers, "still there?")).json())["stream_id"]
    assert followup != stream_id  # the session is healthy and takes the next message


async def test_a_quiet_stream_sends_heartbeat_comments(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    provider: tuple[FakeProvider, str],
) -> None:
    fake, url = provider
    fake.scripts.append(Stream(text("Thinking").chunks, stall_after=2))  # a long tool call, say
    client = await start(
        aiohttp_client,
        make_settings,
        main_agent_use_mock=False,
        model_provider_base_url=url,
        chat_sse_heartbeat_seconds=0.1,
    )
    _, headers = await signed_in(client)
    stream_id = (await (await send(client, headers, "take long")).json())["stream_id"]
    reader = await client.get(f"/api/chat/stream/{stream_id}", headers=headers)
    lines = [(await reader.content.readline()).decode() for _ in range(8)]
    assert ": keep-alive\n" in lines
    await client.post(f"/api/chat/stream/{stream_id}/cancel", headers=headers)
    assert parse_sse((await reader.content.read()).decode())[-1][1] == "done"


async def test_the_agent_recalls_the_users_own_passages_only(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    provider: tuple[FakeProvider, str],
) -> None:
    """The model is offered ``knowledge_search`` over the asking user's passages: what it
    reads back (the tool message of its next request) holds theirs, never another's."""
    fake, url = provider
    fake.scripts += [
        tool_calls(("call_1", "knowledge_search", '{"query": "favourite tea", "limit": 5}')),
        text("You like jasmine tea."),
    ]
    client = await start(
        aiohttp_client, make_settings, main_agent_use_mock=False, model_provider_base_url=url
    )
    account, headers = await signed_in(client)
    stranger = await create_account(client)
    passages = client.app[PASSAGES]
    await passages.store(
        [
            Passage(str(owner), "2026/11/02", 1, 0, "user", "2026-11-02T09:00:00Z", content)
            for owner, content in (
                (account.user_id, "My favourite tea is jasmine tea."),
                (stranger.user_id, "My favourite tea is a secret oolong."),
            )
        ]
    )
    stream_id = (await (await send(client, headers, "what tea do I like?")).json())["stream_id"]
    events = parse_sse(
        await (await client.get(f"/api/chat/stream/{stream_id}", headers=headers)).text()
    )
    assert [name for _, name, _ in events] == [
        "tool_call",
        "tool_response",
        "message_chunk",
        "done",
    ]
    assert events[0][2]["title"] == "Knowledge search"
    assert events[1][2] == {
        "tool_call_id": "call_1",
        "message": "Found 1 passages in your journals",
    }
    [tool_message] = [m for m in fake.requests[-1]["messages"] if m["role"] == "tool"]
    assert "jasmine" in tool_message["content"]
    assert "2026/11/02" in tool_message["content"]
    assert "oolong" not in tool_message["content"]
