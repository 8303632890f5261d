"""Chat over REST + SSE with real PostgreSQL, Redis and actors; the model mocked or faked."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from auth_support import Account, Client, create_account, login_tokens, start

from exobrain.actors.session import (
    RunningSession,
    StreamNotFound,
    Subscribe,
    Subscription,
    stream_id_for,
)
from exobrain.agent.mock import load_messages, words
from exobrain.config import Settings
from exobrain.http.actors import SESSIONS
from exobrain.http.resources import PG_POOL
from exobrain.supervision import ask

sys.path.insert(0, str(Path(__file__).parents[1] / "agent"))
from fake_provider import FakeProvider, Stream, serve, text

AiohttpClient = Callable[..., Any]
MOCK_REPLIES = {reply.text for reply in load_messages(None)}


async def signed_in(client: Client) -> tuple[Account, dict[str, str]]:
    account = await create_account(client)
    tokens = await login_tokens(client, account)
    return account, {"Authorization": f"Bearer {tokens['access_token']}"}


async def send(
    client: Client, headers: dict[str, str], message: str, client_id: uuid.UUID | None = None
) -> Any:
    body = {"message": message, "client_message_id": str(client_id or uuid.uuid4())}
    return await client.post("/api/chat/message", json=body, headers=headers)


def parse_sse(raw: str) -> list[tuple[int, str, dict[str, Any]]]:
    events = []
    for frame in raw.split("\n\n"):
        lines = [line for line in frame.splitlines() if line and not line.startswith(":")]
        fields = dict(line.split(": ", 1) for line in lines)
        if fields:
            events.append((int(fields["id"]), fields["event"], orjson.loads(fields["data"])))
    return events


async def follow(
    client: Client, headers: dict[str, str], stream_id: str, **extra: str
) -> list[tuple[int, str, dict[str, Any]]]:
    response = await client.get(f"/api/chat/stream/{stream_id}", headers={**headers, **extra})
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    return parse_sse(await response.text())


async def stored(client: Client, account: Account) -> list[dict[str, Any]]:
    rows = await client.app[PG_POOL].fetch(
        "SELECT role, content, sequence, metadata, client_message_id FROM messages"
        " WHERE user_id = $1 ORDER BY sequence",
        account.user_id,
    )
    return [dict(row) for row in rows]


async def eventually_stored(client: Client, account: Account, count: int) -> list[dict[str, Any]]:
    for _ in range(200):
        rows = await stored(client, account)
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {len(rows)} of {count} messages were stored")


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]) -> Client:
    return await start(
        aiohttp_client, make_settings, main_agent_use_mock=True, chat_max_pending_turns=10
    )


async def test_a_turn_streams_over_sse_and_both_messages_are_stored(client: Client) -> None:
    account, headers = await signed_in(client)
    response = await send(client, headers, "Plan my day, please")
    assert response.status == 200
    stream_id = (await response.json())["stream_id"]
    events = await follow(client, headers, stream_id)
    names = [name for _, name, _ in events]
    assert names[-1] == "done"
    assert names.count("done") == 1
    assert set(names[:-1]) == {"message_chunk"}
    assert [seq for seq, _, _ in events] == sorted({seq for seq, _, _ in events})
    answer = "".join(data["text"] for _, name, data in events if name == "message_chunk")
    assert events[-1][0] == len(list(words(answer))) + 1  # every word was an event
    assert answer in MOCK_REPLIES
    assert events[-1][2] == {"reason": "completed"}
    rows = await eventually_stored(client, account, 2)
    assert [(row["role"], row["sequence"]) for row in rows] == [("user", 1), ("assistant", 2)]
    assert rows[0]["content"] == "Plan my day, please"
    assert rows[1]["content"] == answer
    metadata = rows[1]["metadata"]
    assert (metadata["model"], metadata["finish_reason"], metadata["stream_id"]) == (
        "mock",
        "stop",
        stream_id,
    )
    assert "status" not in metadata


async def test_a_retry_with_the_same_id_starts_nothing_new(client: Client) -> None:
    account, headers = await signed_in(client)
    client_id = uuid.uuid4()
    first = await (await send(client, headers, "hello", client_id)).json()
    again = await (await send(client, headers, "hello", client_id)).json()
    assert first == again
    await follow(client, headers, first["stream_id"])
    rows = await eventually_stored(client, account, 2)
    await asyncio.sleep(0.2)  # room for a wrongly started second turn to show up
    assert [row["role"] for row in await stored(client, account)] == ["user", "assistant"]
    assert rows[0]["client_message_id"] == client_id


async def test_ten_messages_at_once_are_answered_in_order(client: Client) -> None:
    account, headers = await signed_in(client)
    responses = await asyncio.gather(*(send(client, headers, f"question {n}") for n in range(10)))
    assert [response.status for response in responses] == [200] * 10
    streams = [(await response.json())["stream_id"] for response in responses]
    for stream_id in streams:
        assert (await follow(client, headers, stream_id))[-1][1] == "done"
    rows = await eventually_stored(client, account, 20)
    assert [row["sequence"] for row in rows] == list(range(1, 21))
    accepted = [  # the streams in the order their questions were stored
        str(stream_id_for(account.user_id, row["client_message_id"]))
        for row in rows
        if row["role"] == "user"
    ]
    answered = [row["metadata"]["stream_id"] for row in rows if row["role"] == "assistant"]
    assert sorted(accepted) == sorted(streams)
    assert answered == accepted  # one turn at a time, in the order they were accepted


async def test_streams_are_readable_by_their_owner_only(client: Client) -> None:
    _, owner = await signed_in(client)
    _, stranger = await signed_in(client)
    stream_id = (await (await send(client, owner, "mine")).json())["stream_id"]
    for path in (
        f"/api/chat/stream/{stream_id}",
        f"/api/chat/stream/{uuid.uuid4()}",
        "/api/chat/stream/nope",
    ):
        response = await client.get(path, headers=stranger)
        assert response.status == 404, path
        assert await response.json() == {"detail": "stream not found"}
    cancel = await client.post(f"/api/chat/stream/{stream_id}/cancel", headers=stranger)
    assert cancel.status == 404
    assert (await client.get(f"/api/chat/stream/{stream_id}")).status == 401


async def test_last_event_id_resumes_after_that_event(client: Client) -> None:
    _, headers = await signed_in(client)
    stream_id = (await (await send(client, headers, "resume me")).json())["stream_id"]
    everything = await follow(client, headers, stream_id)
    answer = "".join(data["text"] for _, name, data in everything if name == "message_chunk")
    rest = await follow(client, headers, stream_id, **{"Last-Event-ID": "5"})
    assert all(seq > 5 for seq, _, _ in rest)
    assert rest[-1] == everything[-1]  # the same done, with the same id
    resumed = "".join(data["text"] for _, name, data in rest if name == "message_chunk")
    assert resumed == "".join(list(words(answer))[5:])  # exactly what the first 5 did not carry
    last = str(everything[-1][0])
    assert await follow(client, headers, stream_id, **{"Last-Event-ID": last}) == []  # ends at once
    bad = await client.get(
        f"/api/chat/stream/{stream_id}", headers={**headers, "Last-Event-ID": "x"}
    )
    assert bad.status == 422
    assert [problem["loc"] for problem in (await bad.json())["detail"]] == [
        ["header", "Last-Event-ID"]
    ]


async def test_a_reader_that_leaves_does_not_stop_the_turn(client: Client) -> None:
    account, headers = await signed_in(client)
    stream_id = (await (await send(client, headers, "answer even if I leave")).json())["stream_id"]
    response = await client.get(f"/api/chat/stream/{stream_id}", headers=headers)
    await response.content.readline()
    response.close()
    rows = await eventually_stored(client, account, 2)
    assert rows[1]["role"] == "assistant"
    assert rows[1]["content"] in MOCK_REPLIES


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"message": "", "client_message_id": str(uuid.uuid4())}, "message"),
        ({"message": "   ", "client_message_id": str(uuid.uuid4())}, "message"),
        ({"message": "x" * 17, "client_message_id": str(uuid.uuid4())}, "message"),
        ({"message": "hi", "client_message_id": "not-a-uuid"}, "client_message_id"),
        ({"client_message_id": str(uuid.uuid4())}, "message"),
    ],
)
async def test_bad_messages_are_refused_naming_the_field(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    body: dict[str, str],
    field: str,
) -> None:
    client = await start(
        aiohttp_client, make_settings, main_agent_use_mock=True, chat_max_message_chars=16
    )
    _, headers = await signed_in(client)
    response = await client.post("/api/chat/message", json=body, headers=headers)
    assert response.status == 422
    [problem] = (await response.json())["detail"]
    assert problem["loc"] == ["body", field]


async def test_too_many_messages_are_throttled(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(
        aiohttp_client, make_settings, main_agent_use_mock=True, chat_rate_limit_per_minute=2
    )
    _, headers = await signed_in(client)
    statuses = [(await send(client, headers, f"m{n}")).status for n in range(2)]
    refused = await send(client, headers, "one too many")
    assert statuses == [200, 200]
    assert refused.status == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


async def test_a_session_holds_few_finished_streams_and_the_log_serves_the_rest(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(
        aiohttp_client, make_settings, main_agent_use_mock=True, chat_streams_per_user=3
    )
    account, headers = await signed_in(client)
    streams = []
    for n in range(6):
        streams.append((await (await send(client, headers, f"unread {n}")).json())["stream_id"])
        await eventually_stored(client, account, 2 * (n + 1))
    await asyncio.sleep(0.1)  # the last turn's done reaches the session
    session = await ask(client.app[SESSIONS].ref, RunningSession(account.user_id), timeout=5)
    held = []
    for stream_id in streams:
        with contextlib.suppress(StreamNotFound):
            sink = Subscription(asyncio.get_running_loop())
            await ask(session, Subscribe(uuid.UUID(stream_id), 0, sink), timeout=5)
            held.append(stream_id)
    assert held == streams[-3:]  # the oldest finished streams left the session's memory
    rows = await stored(client, account)
    answers = [row["content"] for row in rows if row["role"] == "assistant"]
    for stream_id, answer in zip(streams, answers, strict=True):  # from memory or from the log
        events = await follow(client, headers, stream_id)
        chunks = [data["text"] for _, name, data in events if name == "message_chunk"]
        assert "".join(chunks) == answer
        assert events[-1][1:] == ("done", {"reason": "completed"})


def test_an_empty_mock_messages_file_stops_start_up(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    from exobrain.agent.mock import MockMessagesError  # noqa: PLC0415

    (tmp_path / "empty.md").write_text("\n")
    with pytest.raises(MockMessagesError, match="holds no message"):
        load_messages(tmp_path / "empty.md")


async def test_cancel_stops_a_slow_model_and_keeps_the_partial_answer(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    provider = FakeProvider()
    provider.scripts.append(
        Stream(text("The partial ", "answer", " that never comes").chunks, stall_after=3)
    )
    async for url in serve(provider):
        client = await start(
            aiohttp_client, make_settings, main_agent_use_mock=False, model_provider_base_url=url
        )
        account, headers = await signed_in(client)
        stream_id = (await (await send(client, headers, "take your time")).json())["stream_id"]
        response = await client.get(f"/api/chat/stream/{stream_id}", headers=headers)
        seen = ""
        while seen != "The partial answer":
            line = (await response.content.readline()).decode()
            if line.startswith("data: ") and "text" in line:
                seen += orjson.loads(line[6:])["text"]
        started = asyncio.get_running_loop().time()
        cancel = await client.post(f"/api/chat/stream/{stream_id}/cancel", headers=headers)
        assert await cancel.json() == {"cancelled": True}
        rest = parse_sse((await response.content.read()).decode())
        assert asyncio.get_running_loop().time() - started < 1.0
        assert rest[-1][1:] == ("done", {"reason": "cancelled"})
        rows = await eventually_stored(client, account, 2)
        assert rows[1]["content"] == "The partial answer"
        assert rows[1]["metadata"]["status"] == "cancelled"
        again = await client.post(f"/api/chat/stream/{stream_id}/cancel", headers=headers)
        assert await again.json() == {"cancelled": False}
