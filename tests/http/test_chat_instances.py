"""Several instances on one PostgreSQL, Redis and NATS: any instance serves any user.

Each test runs two or three apps in this process (their own actors, pools and
connections), sharing the servers, the Redis key prefix and the chat log, as
instances of one deployment do. Killed processes are tests/cluster's.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from types import MappingProxyType
from typing import Any

import pytest
from auth_support import Account, Client, auth_settings
from test_chat import eventually_stored, follow, send, signed_in, stored
from test_chat_socket import connect, frame, same_answer_on, send_turn

from exobrain.actors.session import (
    INTERRUPTED,
    REPAIRED,
    StreamEvent,
    StreamStarted,
    answer_id,
    stream_id_for,
)
from exobrain.config import Settings
from exobrain.http import create_app
from exobrain.http.cluster import CLUSTER
from exobrain.http.resources import PG_POOL, REDIS, SETTINGS

AiohttpClient = Callable[..., Any]
Instances = Callable[..., Awaitable[list[Client]]]

_REPLY = " ".join(f"word{n}" for n in range(60))


@pytest.fixture
def instances(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], tmp_path: Any
) -> Instances:
    """Starts ``count`` instances of one deployment (mock agent, one reply of 60 words)."""
    replies = tmp_path / "replies.md"
    replies.write_text(_REPLY)

    async def started(count: int, **overrides: Any) -> list[Client]:
        values = {
            "main_agent_use_mock": True,
            "main_agent_mock_messages_file": replies,
            "chat_lease_ttl_seconds": 1.0,
            **overrides,
        }
        settings = auth_settings(make_settings, **values)
        return [  # one Qdrant local-mode directory each: it allows one process per directory
            await aiohttp_client(
                create_app(settings.model_copy(update={"exobrain_state_dir": tmp_path / str(n)}))
            )
            for n in range(count)
        ]

    return started


async def owned(client: Client) -> list[str]:
    response = await client.get("/api/ops/actors")
    assert response.status == 200
    body = await response.json()
    assert body["instance"]["id"] == client.app[CLUSTER].instance_id
    sessions: list[str] = body["instance"]["owned_sessions"]
    return sessions


def answer_of(events: list[tuple[int, str, dict[str, Any]]]) -> str:
    """The answer of a complete stream (a late reader gets adjacent chunks merged)."""
    ids = [seq for seq, _, _ in events]
    assert ids == sorted(set(ids)), events
    assert [name for _, name, _ in events].count("done") == 1
    assert events[-1][1] == "done"
    return "".join(data["text"] for _, name, data in events if name == "message_chunk")


async def test_a_turn_sent_to_one_instance_is_read_and_resumed_on_another(
    instances: Instances,
) -> None:
    a, b = await instances(2)
    account, headers = await signed_in(a)
    stream_id = (await (await send(a, headers, "hello")).json())["stream_id"]
    on_b = await follow(b, headers, stream_id)
    assert answer_of(on_b) == _REPLY
    assert on_b == await follow(a, headers, stream_id)  # the same numbers everywhere
    resumed = await follow(b, headers, stream_id, **{"Last-Event-ID": "30"})  # word29 was 30
    assert answer_of(resumed) == " ".join(f"word{n}" for n in range(30, 60))
    assert await owned(a) == [str(account.user_id)]
    assert await owned(b) == []
    stranger, strangers = await signed_in(b)
    other = await b.get(f"/api/chat/stream/{stream_id}", headers=strangers)
    assert other.status == 404  # the log is read by the stream's owner only
    assert stranger.user_id != account.user_id


async def test_commands_for_a_user_owned_elsewhere_reach_the_owner(instances: Instances) -> None:
    a, b, c = await instances(3, main_agent_mock_words_per_second=100.0)
    account, headers = await signed_in(a)
    first = (await (await send(a, headers, "first")).json())["stream_id"]
    forwarded = await send(b, headers, "second")
    assert forwarded.status == 200
    second = (await forwarded.json())["stream_id"]
    cancel = await c.post(f"/api/chat/stream/{first}/cancel", headers=headers)
    assert cancel.status == 200
    assert (await cancel.json())["cancelled"] is True  # it was running on a, 0.6 s a turn
    assert (await follow(c, headers, first))[-1][1:] == ("done", {"reason": "cancelled"})
    assert answer_of(await follow(b, headers, second)) == _REPLY
    rows = await eventually_stored(a, account, 4)
    answers = {row["metadata"]["stream_id"]: row for row in rows if row["role"] == "assistant"}
    assert answers[first]["metadata"]["status"] == "cancelled"
    assert answers[second]["content"] == _REPLY
    assert len(rows) == 4
    assert [await owned(client) for client in (a, b, c)] == [[str(account.user_id)], [], []]
    assert 'chat_forwarded_commands_total{command="send"} 1.0' in await metrics(b)
    assert 'chat_forwarded_commands_total{command="cancel"} 1.0' in await metrics(c)
    assert "chat_leases_acquired_total 1.0" in await metrics(a)
    assert "chat_leases_held 1.0" in await metrics(a)
    assert "chat_log_publish_seconds_count" in await metrics(a)


async def test_the_owner_counts_the_rate_limit_wherever_the_messages_arrive(
    instances: Instances,
) -> None:
    a, b = await instances(2, chat_rate_limit_per_minute=3)
    _, headers = await signed_in(a)
    if time.time() % 60 > 50:  # the count starts anew each minute: stay inside one
        await asyncio.sleep(61 - time.time() % 60)
    replies = [await send(client, headers, f"m{n}") for n, client in enumerate((a, b, a, b))]
    assert [reply.status for reply in replies] == [200, 200, 200, 429]
    assert (await replies[-1].json())["detail"] == "too many messages, slow down"
    assert 1 <= int(replies[-1].headers["Retry-After"]) <= 60


async def metrics(client: Client) -> str:
    response = await client.get("/metrics")
    assert response.status == 200
    return await response.text()


async def test_a_retry_through_another_instance_answers_the_same_stream(
    instances: Instances,
) -> None:
    a, b = await instances(2)
    account, headers = await signed_in(a)
    cid = uuid.uuid4()
    first = await (await send(a, headers, "once", cid)).json()
    again = await (await send(b, headers, "once", cid)).json()
    assert again == first == {"stream_id": str(stream_id_for(account.user_id, cid))}
    assert answer_of(await follow(b, headers, first["stream_id"])) == _REPLY
    assert len(await eventually_stored(a, account, 2)) == 2


async def test_sockets_on_two_instances_see_every_turn_of_the_user(instances: Instances) -> None:
    a, b = await instances(2)
    _, headers = await signed_in(a)
    on_a, on_b = await connect(a, headers), await connect(b, headers)
    for ws in (on_a, on_b):  # attached before anything is sent
        await ws.send_json({"type": "ping"})
        assert await frame(ws) == {"type": "pong"}
    for sender, other in ((on_b, on_a), (on_a, on_b)):  # owned by b: sent on b, then via a
        _, started = await send_turn(sender, "to everyone")
        assert await frame(other) == started
        assert await same_answer_on((sender, other), started["stream_id"]) == _REPLY


async def test_a_stopped_instance_hands_its_users_over_at_once(instances: Instances) -> None:
    a, b = await instances(2, chat_lease_ttl_seconds=30.0)
    account, headers = await signed_in(a)
    stream_id = (await (await send(a, headers, "before")).json())["stream_id"]
    assert answer_of(await follow(a, headers, stream_id)) == _REPLY
    await a.close()  # graceful: running turns stored, leases released
    started = time.monotonic()
    after = await send(b, headers, "after")
    assert after.status == 200
    assert time.monotonic() - started < 5  # far less than the 30 s lease
    assert answer_of(await follow(b, headers, (await after.json())["stream_id"])) == _REPLY
    assert await owned(b) == [str(account.user_id)]


async def test_a_dead_owners_unfinished_turns_are_taken_over(instances: Instances) -> None:
    """What a killed owner leaves: a stored question, its turn half-logged, its lease
    lapsed but registered. Another instance finds it, stores the partial answer as
    interrupted and ends the stream; a turn that never began is run."""
    [b] = await instances(1, chat_lease_ttl_seconds=0.6)
    account, headers = await signed_in(b)
    cluster = b.app[CLUSTER]
    reference = time.strftime("%Y/%m/%d", time.gmtime())
    cut, waiting = uuid.uuid4(), uuid.uuid4()
    cut_stream, waiting_stream = (stream_id_for(account.user_id, cid) for cid in (cut, waiting))
    for cid, text in ((cut, "cut short"), (waiting, "never begun")):
        await send_stored_question(b, account, reference, cid, text)
    events = [
        StreamEvent(cut_stream, n, "message_chunk", MappingProxyType({"text": f"part{n} "}))
        for n in (1, 2, 3)
    ]
    cluster.log.append(
        account.user_id,
        cut_stream,
        [StreamStarted(cut_stream, cut, reference, "cut short"), *events],
        owner="dead",
    )
    cluster.log.append(
        account.user_id,
        waiting_stream,
        [StreamStarted(waiting_stream, waiting, reference, "never begun")],
        owner="dead",
    )
    await cluster.log.durable(cut_stream)
    await cluster.log.durable(waiting_stream)
    settings = b.app[SETTINGS]  # the dead owner's lease: registered, and lapsed
    await b.app[REDIS].zadd(f"{settings.redis_key_prefix}chat-leased", {str(account.user_id): 0})

    ended = await follow(b, headers, str(cut_stream))
    assert [name for _, name, _ in ended][-2:] == ["error", "done"]
    assert ended[-2][2] == {"tool_call_id": None, "message": INTERRUPTED}
    assert ended[-1][2] == {"reason": "error"}
    answered = await follow(b, headers, str(waiting_stream))
    assert answer_of(answered) == _REPLY
    rows = await eventually_stored(b, account, 4)
    answers = {row["metadata"]["stream_id"]: row for row in rows if row["role"] == "assistant"}
    assert answers[str(cut_stream)]["content"] == "part1 part2 part3 "
    assert answers[str(cut_stream)]["metadata"]["status"] == "interrupted"
    assert answers[str(waiting_stream)]["content"] == _REPLY
    assert len(await stored(b, account)) == 4


async def send_stored_question(
    client: Client, account: Account, reference: str, cid: uuid.UUID, text: str
) -> None:
    """A question as its owner stored it before dying (no turn of this instance's)."""
    await client.app[PG_POOL].execute(
        """
        SELECT journal_append(jsonb_build_array(jsonb_build_object(
            'u', $1::text, 'r', $2::text, 'role', 'user', 'content', $3::text, 'cid', $4::text)))
        """,
        str(account.user_id),
        reference,
        text,
        str(cid),
    )


async def test_a_retry_whose_stream_left_the_log_is_answered_from_the_journal(
    instances: Instances,
) -> None:
    """A stream id the service handed out always leads to a stream that ends: after the
    log forgot it, a retry logs it again from what the journal holds."""
    [a] = await instances(1)
    account, headers = await signed_in(a)
    reference = time.strftime("%Y/%m/%d", time.gmtime())
    answered, lost = uuid.uuid4(), uuid.uuid4()
    await send_stored_question(a, account, reference, answered, "answered long ago")
    await a.app[PG_POOL].execute(
        """
        SELECT journal_append(jsonb_build_array(jsonb_build_object(
            'u', $1::text, 'r', $2::text, 'role', 'assistant', 'content', 'the old answer',
            'cid', $3::text, 'meta', '{}'::jsonb)))
        """,
        str(account.user_id),
        reference,
        str(answer_id(stream_id_for(account.user_id, answered))),
    )
    await send_stored_question(a, account, reference, lost, "never answered")
    again = await send(a, headers, "answered long ago", answered)
    events = await follow(a, headers, (await again.json())["stream_id"])
    assert events == [
        (1, "message_chunk", {"text": "the old answer"}),
        (2, "done", {"reason": "completed"}),
    ]
    again = await send(a, headers, "never answered", lost)
    events = await follow(a, headers, (await again.json())["stream_id"])
    assert [name for _, name, _ in events] == ["error", "done"]
    assert events[-1][2] == {"reason": "error"}
    assert len(await stored(a, account)) == 3  # nothing was run or stored again


def _huge_reply() -> str:
    """Over 2 MB: 900 distinct words of 1,200 characters (more than a tsvector holds, more
    than one NATS message), then one 1.2 MB word (more than a message on its own)."""
    words = [f"w{n:04d}" + "x" * 1195 for n in range(900)]
    return " ".join(words) + " " + "é" * 600_000


async def test_an_answer_over_max_payload_is_read_on_another_instance_and_stored_whole(
    instances: Instances, tmp_path: Any
) -> None:
    reply = _huge_reply()
    replies = tmp_path / "huge.md"
    replies.write_text(reply)
    a, b = await instances(2, main_agent_mock_messages_file=replies)
    account, headers = await signed_in(a)
    stream_id = (await (await send(a, headers, "a long one")).json())["stream_id"]
    on_b = await follow(b, headers, stream_id)
    assert answer_of(on_b) == reply
    assert on_b[-1][1:] == ("done", {"reason": "completed"})
    rows = await eventually_stored(a, account, 2)
    assert rows[1]["content"] == reply
    assert "repair" not in rows[1]["metadata"]


async def test_a_dead_owners_huge_turn_is_taken_over_whole(instances: Instances) -> None:
    [b] = await instances(1, chat_lease_ttl_seconds=0.6)
    account, headers = await signed_in(b)
    cluster = b.app[CLUSTER]
    reference = time.strftime("%Y/%m/%d", time.gmtime())
    cid = uuid.uuid4()
    stream_id = stream_id_for(account.user_id, cid)
    await send_stored_question(b, account, reference, cid, "cut short")
    huge = _huge_reply().split(" ")
    events = [
        StreamEvent(stream_id, n, "message_chunk", MappingProxyType({"text": word + " "}))
        for n, word in enumerate(huge, 1)
    ]
    started = StreamStarted(stream_id, cid, reference, "cut short")
    cluster.log.append(account.user_id, stream_id, [started, *events], owner="dead")
    await cluster.log.durable(stream_id)
    settings = b.app[SETTINGS]  # the dead owner's lease: registered, and lapsed
    await b.app[REDIS].zadd(f"{settings.redis_key_prefix}chat-leased", {str(account.user_id): 0})

    ended = await follow(b, headers, str(stream_id))
    assert [name for _, name, _ in ended][-2:] == ["error", "done"]
    assert answer_of(ended) == " ".join(huge) + " "
    [_, answer] = await eventually_stored(b, account, 2)
    assert answer["content"] == " ".join(huge) + " "
    assert answer["metadata"]["status"] == "interrupted"


async def test_an_answer_the_database_refuses_is_stored_repaired_at_once(
    instances: Instances, tmp_path: Any
) -> None:
    """PostgreSQL holds no NUL character: retrying could never store this answer. A
    repaired copy is stored instead, and the reader is told so; the turn after it runs."""
    replies = tmp_path / "nul.md"
    replies.write_text("before\x00after")
    [a] = await instances(1, main_agent_mock_messages_file=replies)
    account, headers = await signed_in(a)
    stream_id = (await (await send(a, headers, "say it")).json())["stream_id"]
    events = await follow(a, headers, stream_id)
    assert answer_of(events) == "before\x00after"  # what the model said, as it said it
    assert events[-2][1:] == ("error", {"tool_call_id": None, "message": REPAIRED})
    assert events[-1][2] == {"reason": "error"}
    [_, answer] = await eventually_stored(a, account, 2)
    assert answer["content"] == "before\ufffdafter"
    assert answer["metadata"]["repair"] == {
        "refused": "22P05",
        "replaced_characters": 1,
        "chars": 12,
        "truncated": False,
    }
    assert "status" not in answer["metadata"]  # the model finished; only the copy differs
    again = (await (await send(a, headers, "again")).json())["stream_id"]
    assert (await follow(a, headers, again))[-2][1] == "error"
    assert len(await eventually_stored(a, account, 4)) == 4
