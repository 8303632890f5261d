"""The chat log against real NATS: no message over ``max_payload``, every entry read back whole.

Two connections stand for two instances: one writes, the other replays, follows
and watches. The answer is over 2 MB: 3,000 distinct words (a batch that has to
go in several messages) and one chunk of 1.5 MB that has to be cut into
fragments, its cuts landing among multi-byte characters, quotes and backslashes.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections import deque
from collections.abc import AsyncIterator
from types import MappingProxyType

import nats
import orjson
import pytest
from nats.aio.client import Client as NatsClient

from exobrain.actors.session import StreamEvent, StreamStarted, TurnOutcome
from exobrain.cluster import ChatLog, Logged, finished
from exobrain.cluster._log import Entry, _Assembly, _fragments, _Piece, _take, decode

USER = uuid.uuid4()


@pytest.fixture
async def logs(nats_url: str) -> AsyncIterator[tuple[ChatLog, ChatLog]]:
    """A writer's and a reader's ChatLog on their own connections and their own stream."""
    name = f"BIGLOG_{secrets.token_hex(4)}"
    clients: list[NatsClient] = [await nats.connect(nats_url) for _ in range(2)]
    writer, reader = (
        ChatLog(
            client,
            subject_prefix=f"t{name}",
            stream_name=name,
            retention=60.0,
            max_bytes=64 << 20,
            instance_id=instance,
        )
        for client, instance in zip(clients, ("writer", "reader"), strict=True)
    )
    await writer.ensure()
    yield writer, reader
    await writer.close()
    await clients[0].jetstream().delete_stream(name)
    for client in clients:
        await client.close()


def chunk(stream_id: uuid.UUID, seq: int, text: str) -> StreamEvent:
    return StreamEvent(stream_id, seq, "message_chunk", MappingProxyType({"text": text}))


def text_of(events: list[StreamEvent]) -> str:
    return "".join(event.data["text"] for event in events if event.name == "message_chunk")


def big_turn(stream_id: uuid.UUID) -> list[Entry]:
    huge = "".join(f'é"\\{n}€😀 ' for n in range(100_000))  # 1.5 MB, 1.6 MB as JSON
    words = [chunk(stream_id, seq, f"distinct{seq:05d} " * 40) for seq in range(1, 3001)]
    return [
        StreamStarted(stream_id, uuid.uuid4(), "2026/01/02", "a long answer, please"),
        *words,
        chunk(stream_id, 3001, huge),
        TurnOutcome(stream_id, "completed", None, MappingProxyType({"model": "mock"})),
        StreamEvent(stream_id, 3002, "done", MappingProxyType({"reason": "completed"})),
    ]


async def test_an_answer_over_max_payload_is_written_and_read_back_exactly(
    logs: tuple[ChatLog, ChatLog],
) -> None:
    writer, reader = logs
    stream_id = uuid.uuid4()
    turn = big_turn(stream_id)
    watched: list[Logged] = []
    watched_all = asyncio.Event()

    async def on_message(logged: Logged) -> None:
        watched.append(logged)
        if finished(logged.entries):
            watched_all.set()

    watch = await reader.watch(USER, on_message)
    follower = await reader.reader(USER, stream_id, after_seq=0)
    writer.append(USER, stream_id, turn)
    await writer.durable(stream_id)

    events = [entry for entry in turn if isinstance(entry, StreamEvent)]
    assert await reader.history(USER, stream_id) == turn
    followed: list[StreamEvent] = []
    while not followed or followed[-1].name != "done":  # merged chunks: it is behind
        batch = await follower.next(timeout=5.0)
        assert batch, "the reader stalled"
        followed += [item for item in batch if isinstance(item, StreamEvent)]
    assert text_of(followed) == text_of(events)
    assert followed[-1] == events[-1]
    await follower.close()
    last = await reader.last(USER, stream_id)
    assert last is not None
    assert last.last_seq == 3002
    assert last.position > 2
    await asyncio.wait_for(watched_all.wait(), 10.0)  # live too, every entry whole
    assert [entry for logged in watched for entry in logged.entries] == turn
    await watch.unsubscribe()


async def test_an_orphaned_huge_turn_is_rebuilt_from_the_log(
    logs: tuple[ChatLog, ChatLog],
) -> None:
    writer, reader = logs
    stream_id = uuid.uuid4()
    turn = big_turn(stream_id)[:-2]  # no outcome, no end: its owner died
    writer.append(USER, stream_id, turn, owner="dead")
    await writer.durable(stream_id)
    [orphan] = await reader.orphans(USER)
    assert orphan.started == turn[0]
    assert list(orphan.events) == turn[1:]
    assert orphan.outcome is None


def test_fragments_join_once_whatever_is_repeated_or_missed() -> None:
    """A reader meets a message twice (stored again after the duplicate window) or
    starts after an entry's first fragment: the entry is whole once, or not at all."""
    stream_id = uuid.uuid4()
    entries = [chunk(stream_id, 1, "ß\\" * 5000), chunk(stream_id, 2, "short")]
    pieces = deque(_Piece(orjson.dumps(["c", e.seq, e.data["text"]])) for e in entries)
    messages = []
    while pieces:
        messages.append(b"[" + b",".join(p.data for p in _take(pieces, 4096)) + b"]")
    assert all(len(message) <= 4096 for message in messages)
    assert len(messages) > 3
    assembly = _Assembly()
    repeated = [messages[0], *messages[:2], messages[1], *messages[2:]]
    read = [e for m in repeated for e in decode(stream_id, "", m, assembly=assembly).entries]
    assert read == entries
    late = _Assembly()
    read = [e for m in messages[1:] for e in decode(stream_id, "", m, assembly=late).entries]
    assert read == entries[1:]
    assert decode(stream_id, "", messages[1]).last_seq == 0  # chunk 1 is not whole yet
    assert decode(stream_id, "", messages[-1]).last_seq == 2
    assert len(_fragments(orjson.dumps(["c", 1, '"' * 3000]), 1000)) >= 6
