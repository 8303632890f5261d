"""What the sessions keep of finished streams: merged, under one cap for the process, the
oldest finished first, and every stream still readable to its end (from the chat log)."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import ClientResponse
from auth_support import Client, start
from test_chat import follow, parse_sse, send, signed_in

from exobrain.actors.session import (
    RunningSession,
    StreamBudget,
    StreamNotFound,
    StreamStarted,
    Subscribe,
    Subscribed,
    Subscription,
)
from exobrain.actors.session.stream import Stream as KeptStream
from exobrain.agent.events import Done, MessageChunk
from exobrain.agent.mock import words
from exobrain.config import Settings
from exobrain.http.actors import SESSIONS
from exobrain.http.chat.routes import CHAT
from exobrain.supervision import ask

sys.path.insert(0, str(Path(__file__).parents[1] / "agent"))
from fake_provider import FakeProvider, Stream, serve, text

AiohttpClient = Callable[..., Any]


async def read_until(response: ClientResponse, wanted: str) -> None:
    """Read an SSE response until its chunks spell ``wanted`` (the stream goes on)."""
    seen = ""
    while seen != wanted:
        line = (await response.content.readline()).decode()
        assert line, f"the stream ended after {len(seen)} characters"
        if line.startswith("data: ") and '"text"' in line:
            seen += orjson.loads(line[6:])["text"]


def answer_of(events: list[tuple[int, str, dict[str, Any]]]) -> str:
    return "".join(data["text"] for _, name, data in events if name == "message_chunk")


async def held(client: Client, user_id: uuid.UUID, stream_id: str) -> Subscribed | None:
    """The stream as the user's session holds it in memory, or None."""
    session = await ask(client.app[SESSIONS].ref, RunningSession(user_id), timeout=5)
    subscribe = Subscribe(uuid.UUID(stream_id), 0, Subscription(asyncio.get_running_loop()))
    try:
        subscribed: Subscribed = await ask(session, subscribe, timeout=5)
    except StreamNotFound:
        return None
    return subscribed


async def test_a_long_answer_shrinks_once_finished_and_resumes_exactly_after_any_number(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
) -> None:
    fake = FakeProvider()
    async for url in serve(fake):
        pieces = [f"word{n} " for n in range(3000)]
        fake.scripts.append(Stream(text(*pieces).chunks, stall_after=len(pieces) + 1))
        client = await start(
            aiohttp_client, make_settings, main_agent_use_mock=False, model_provider_base_url=url
        )
        budget = client.app[CHAT].streams
        _, headers = await signed_in(client)
        sent = await send(client, headers, "a long story, please")
        stream_id = (await sent.json())["stream_id"]
        live = await client.get(f"/api/chat/stream/{stream_id}", headers=headers)
        await read_until(live, "".join(pieces))  # every word is in the session: it pushed them
        running = budget.retained_bytes
        fake.release.set()
        assert parse_sse(await live.text())[-1][1:] == ("done", {"reason": "completed"})
        finished = budget.retained_bytes

        assert running > 250 * len(pieces)  # an event per word while it runs
        assert finished < running / 10  # one merged event, about the text, once it is done
        for after in (0, 1, 1234, 2999, 3000):
            events = await follow(client, headers, stream_id, **{"Last-Event-ID": str(after)})
            assert answer_of(events) == "".join(pieces[after:])
            assert events[-1][1:] == ("done", {"reason": "completed"})


async def test_past_the_cap_the_oldest_finished_streams_go_first_and_the_log_serves_them(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    reply = " ".join(f"word{n}" for n in range(40))
    (tmp_path / "reply.md").write_text(reply + "\n")
    running, finished = _weights("question 0", reply)
    cap = running + 5 * finished // 2  # a turn running beside two and a half finished ones
    client = await start(
        aiohttp_client,
        make_settings,
        main_agent_use_mock=True,
        main_agent_mock_messages_file=tmp_path / "reply.md",
        chat_streams_max_bytes=cap,
    )
    account, headers = await signed_in(client)
    streams = []
    for n in range(6):
        streams.append((await (await send(client, headers, f"question {n}")).json())["stream_id"])
        assert answer_of(await follow(client, headers, streams[-1])) == reply

    kept = [stream_id for stream_id in streams if await held(client, account.user_id, stream_id)]
    assert len(kept) >= 2
    assert kept == streams[-len(kept) :]  # the oldest went first
    assert client.app[CHAT].streams.retained_bytes <= cap
    for stream_id in streams:  # from memory or from the chat log, each to its end
        events = await follow(client, headers, stream_id)
        assert answer_of(events) == reply
        assert events[-1][1:] == ("done", {"reason": "completed"})
    resumed = await follow(client, headers, streams[0], **{"Last-Event-ID": "10"})
    assert answer_of(resumed) == "".join(list(words(reply))[10:])


async def test_a_running_stream_outlives_a_tiny_cap_and_a_resuming_reader_misses_nothing(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
) -> None:
    fake = FakeProvider()
    async for url in serve(fake):
        pieces = [f"piece{n} " for n in range(200)]
        fake.scripts += [text("A short ", "answer."), Stream(text(*pieces).chunks, stall_after=101)]
        client = await start(
            aiohttp_client,
            make_settings,
            main_agent_use_mock=False,
            model_provider_base_url=url,
            chat_streams_max_bytes=1024,
        )
        account, headers = await signed_in(client)
        short = (await (await send(client, headers, "briefly")).json())["stream_id"]
        assert answer_of(await follow(client, headers, short)) == "A short answer."
        long = (await (await send(client, headers, "at length")).json())["stream_id"]
        live = await client.get(f"/api/chat/stream/{long}", headers=headers)
        await read_until(live, "".join(pieces[:100]))

        assert await held(client, account.user_id, short) is None  # finished, past the cap
        status = await held(client, account.user_id, long)
        assert status == Subscribed(last_seq=100, finished=False)  # running: never evicted
        assert client.app[CHAT].streams.retained_bytes > 1024
        resuming = await client.get(
            f"/api/chat/stream/{long}", headers={**headers, "Last-Event-ID": "42"}
        )
        await read_until(resuming, "".join(pieces[42:100]))
        fake.release.set()
        for reader in (resuming, live):  # each gets the rest exactly, then the end
            rest = parse_sse(await reader.text())
            assert answer_of(rest) == "".join(pieces[100:])
            assert rest[-1][1:] == ("done", {"reason": "completed"})
        assert await held(client, account.user_id, long) is None  # finished: now past the cap
        events = await follow(client, headers, long, **{"Last-Event-ID": "42"})
        assert answer_of(events) == "".join(pieces[42:])  # from the chat log
        assert events[-1][1:] == ("done", {"reason": "completed"})


def _weights(question: str, reply: str) -> tuple[int, int]:
    """What a turn answering ``reply`` word by word weighs running, then finished."""
    budget = StreamBudget(1 << 30)
    started = StreamStarted(uuid.uuid4(), uuid.uuid4(), "2026/12/01", question)
    stream = KeptStream(started, budget.share(lambda: None))
    stream.append([MessageChunk(word) for word in words(reply)])
    running = stream.nbytes
    stream.append([Done("completed")])
    return running, stream.nbytes
