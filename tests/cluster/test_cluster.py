"""Several ``exobrain serve`` processes on one PostgreSQL, Redis and NATS.

Every instance is a real subprocess; clients reach them over HTTP, SSE and
WebSocket only. What is checked is what a user behind a load balancer sees: any
instance answers, streams read the same everywhere, one turn at a time per user,
and no acknowledged message is lost or answered twice when instances die, stop
or lose PostgreSQL.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from exobrain.agent.mock import words
from exobrain.embedded import EmbeddedServer

from .conftest import MakeCluster
from .harness import (
    RETRYABLE,
    Accepted,
    Cluster,
    Instance,
    Socket,
    SseEvent,
    User,
    answers_by_stream,
    long_reply,
    socket_answer,
    sse_answer,
    until,
)

#: Words a second of a paced mock: a turn of n words lasts n / PACE seconds.
PACE = 20


def words_in(events: list[SseEvent]) -> int:
    """Words of the answer so far (chunks of a reader that fell behind come merged)."""
    return len("".join(e.data["text"] for e in events if e.event == "message_chunk").split())


async def started_then_events(socket: Socket, stream_id: str, message: str) -> str:
    """The socket announced the stream (with its question) before its first event, then
    carried it whole; its answer text."""
    started = await socket.frame(
        lambda f: f["type"] == "stream.started" and f["stream_id"] == stream_id,
        10,
        f"stream.started of {stream_id}",
    )
    assert started["message"] == message
    events = await socket.finish(stream_id)
    frames = [f.data for f in socket.frames]
    assert frames.index(started) < frames.index(events[0]), "an event came before stream.started"
    return socket_answer(events)


def by_seq(events: list[dict[str, Any]]) -> dict[int, tuple[str, Any]]:
    """Unmerged events by sequence number: (name, data)."""
    return {e["seq"]: (e["event"], e["data"]) for e in events if "first_seq" not in e}


def agree(*streams: list[dict[str, Any]]) -> None:
    """The same stream seen on several sockets: same done seq, same events at the same seq."""
    assert len({events[-1]["seq"] for events in streams}) == 1, [s[-1] for s in streams]
    first = by_seq(streams[0])
    for other in map(by_seq, streams[1:]):
        common = first.keys() & other.keys()
        assert {seq: first[seq] for seq in common} == {seq: other[seq] for seq in common}


def answered(streams: set[str]) -> Callable[[list[dict[str, Any]]], bool]:
    """Whether a journal holds an answer to each of these streams."""
    return lambda messages: streams <= answers_by_stream(messages).keys()


async def journal_when(
    instance: Instance,
    user: User,
    ready: Callable[[list[dict[str, Any]]], bool],
    what: str,
    timeout: float = 20.0,
) -> list[dict[str, Any]]:
    """The user's journal (over the API) once ``ready`` holds; refused reads are retried."""
    deadline = time.monotonic() + timeout
    while True:
        last: object
        try:
            messages = await instance.journal(user)
        except AssertionError as exc:  # e.g. PostgreSQL still reconnecting
            last = exc
        else:
            if ready(messages):
                return messages
            last = messages
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}: {last}")
        await asyncio.sleep(0.1)


async def test_harness_smoke(make_cluster: MakeCluster) -> None:
    """One instance: log in, one turn read over SSE, the journal has both messages, and
    SIGTERM ends the process with 0."""
    cluster = await make_cluster()
    [instance] = await cluster.start()
    user = await cluster.user()
    accepted = await cluster.send(user, "hello there", instance)
    assert accepted.refusals == ()
    events = await instance.sse(user, accepted.stream_id).finish()
    answer = sse_answer(events)
    assert answer in cluster.replies
    assert events[-1].data == {"reason": "completed"}
    messages = await journal_when(instance, user, lambda m: len(m) == 2, "both messages")
    assert [(m["role"], m["content"]) for m in messages] == [
        ("user", "hello there"),
        ("assistant", answer),
    ]
    assert messages[1]["metadata"]["stream_id"] == accepted.stream_id
    assert await instance.stop() == 0


async def test_streams_and_sockets_span_instances(make_cluster: MakeCluster) -> None:
    reply = long_reply(30, "span")
    cluster = await make_cluster(replies=(reply,))
    a, b = await cluster.start(2)
    user = await cluster.user()
    on_a, on_b = await a.socket(user), await b.socket(user)
    await on_a.ping()
    await on_b.ping()

    # Sent through A over REST, read over SSE on B: complete.
    sent = await a.post_message(user, "first question", uuid.uuid4())
    assert sent.status == 200, sent
    first = sent.body["stream_id"]
    full = await b.sse(user, first).finish()
    assert sse_answer(full) == reply
    assert full[-1].data == {"reason": "completed"}

    # Resumed on B after an event in the middle: only the later events. (A backlog may
    # come merged, so the middle is taken from the mock's pieces: event n is word n.)
    pieces = list(words(reply))
    assert full[-1].seq == len(pieces) + 1
    middle = len(pieces) // 2
    resumed = await b.sse(user, first, last_event_id=middle).finish()
    assert all(event.seq > middle for event in resumed), resumed
    assert sse_answer(resumed) == "".join(pieces[middle:])
    assert (resumed[-1].seq, resumed[-1].data) == (full[-1].seq, full[-1].data)

    # Both sockets saw it: stream.started, then the same events with the same seq.
    assert await started_then_events(on_a, first, "first question") == reply
    assert await started_then_events(on_b, first, "first question") == reply
    agree(on_a.events(first), on_b.events(first))
    assert on_a.events(first)[-1]["seq"] == full[-1].seq

    # Sent through B's socket: A's socket follows it as well, and so does SSE on A.
    cid = str(uuid.uuid4())
    await on_b.send({"type": "chat.send", "client_message_id": cid, "message": "second one"})
    accepted = await on_b.frame(
        lambda f: f["type"] == "chat.accepted" and f["client_message_id"] == cid, 10, "accepted"
    )
    second = accepted["stream_id"]
    assert await started_then_events(on_b, second, "second one") == reply
    assert await started_then_events(on_a, second, "second one") == reply
    agree(on_a.events(second), on_b.events(second))
    on_sse = await a.sse(user, second).finish()
    assert sse_answer(on_sse) == reply
    assert on_sse[-1].seq == on_a.events(second)[-1]["seq"]

    messages = await journal_when(a, user, lambda m: len(m) == 4, "four messages")
    assert [m["role"] for m in messages] == ["user", "assistant"] * 2
    assert [m["metadata"].get("stream_id") for m in messages[1::2]] == [first, second]
    assert on_a.of_type("error") == on_b.of_type("error") == []


async def test_concurrent_sends_over_three_instances_run_one_turn_at_a_time(
    make_cluster: MakeCluster,
) -> None:
    reply = long_reply(8, "turn")  # 80 ms a turn at 100 words/s: overlaps would interleave
    cluster = await make_cluster(replies=(reply,), main_agent_mock_words_per_second=100)
    instances = await cluster.start(3)
    user = await cluster.user()
    sockets = [await instance.socket(user) for instance in instances]
    for socket in sockets:
        await socket.ping()

    questions = [f"question {n}" for n in range(10)]
    sent = await asyncio.gather(
        *(cluster.send(user, q, instances[n % 3]) for n, q in enumerate(questions))
    )
    streams = [accepted.stream_id for accepted in sent]
    assert len(set(streams)) == 10
    # While the turns run, exactly one instance owns the user.
    owned = await asyncio.gather(*(instance.owned_sessions() for instance in instances))
    assert [user.id in sessions for sessions in owned].count(True) == 1, owned

    # Every stream, read over SSE on an instance it was not sent through: complete,
    # no id twice.
    readers = [instances[(n + 1) % 3].sse(user, s) for n, s in enumerate(streams)]
    sse_done = {}
    for stream_id, reader in zip(streams, readers, strict=True):
        events = await reader.finish(timeout=30)
        assert sse_answer(events) == reply
        sse_done[stream_id] = events[-1].seq

    # On every socket the turns come one after the other, never interleaved, in the
    # same order everywhere, each complete with the seq SSE gave.
    orders = []
    for socket in sockets:
        for stream_id, question in zip(streams, questions, strict=True):
            assert await started_then_events(socket, stream_id, question) == reply
            assert socket.events(stream_id)[-1]["seq"] == sse_done[stream_id]
        runs = [f.data["stream_id"] for f in socket.frames if f.data["type"] == "event"]
        blocks = [s for n, s in enumerate(runs) if n == 0 or runs[n - 1] != s]
        assert len(blocks) == len(set(blocks)) == 10, f"turns overlapped on {socket.name}"
        orders.append(blocks)
    assert orders[0] == orders[1] == orders[2]

    # Exactly ten answers, one per stream, stored in the order the turns ran.
    messages = await journal_when(instances[0], user, lambda m: len(m) >= 20, "20 messages")
    assert sorted(m["content"] for m in messages if m["role"] == "user") == sorted(questions)
    answer_order = [m["metadata"].get("stream_id") for m in messages if m["role"] == "assistant"]
    assert len(messages) == 20
    assert answer_order == orders[0]
    assert all(m["content"] == reply for m in messages if m["role"] == "assistant")


@pytest.mark.fault
async def test_killing_the_owner_mid_turn_interrupts_it_and_another_takes_over(
    make_cluster: MakeCluster,
) -> None:
    reply = long_reply(300, "story")  # 15 s at PACE on the owner
    cluster = await make_cluster(replies=(reply,))
    owner = cluster.launch(main_agent_mock_words_per_second=PACE)
    survivor = cluster.launch()  # unpaced: its answers come at once
    await asyncio.gather(owner.wait_ready(), survivor.wait_ready())
    user = await cluster.user()
    socket = await survivor.socket(user)
    await socket.ping()
    sent = await owner.post_message(user, "tell me a long story", uuid.uuid4())
    assert sent.status == 200, sent
    stream_id = sent.body["stream_id"]
    assert user.id in await owner.owned_sessions()
    assert user.id not in await survivor.owned_sessions()

    reader = survivor.sse(user, stream_id)
    await reader.wait(lambda events: words_in(events) >= 10, 10, "ten words")
    killed_at = time.monotonic()
    assert await owner.kill() == -9
    ttl = cluster.lease_ttl
    # The user's next message, sent to the survivor at once (the dead owner's lease has
    # not lapsed yet, and NATS may not know it is gone): answered in time.
    sending = asyncio.create_task(
        cluster.send(user, "are you still there?", survivor, timeout=ttl + 5)
    )

    # The readers on the survivor: the stream ends with error, then done.
    events = await reader.finish(timeout=ttl + 5)
    assert reader.done is not None
    assert reader.done.at - killed_at <= ttl + 5
    assert [e.event for e in events[-2:]] == ["error", "done"]
    assert events[-2].data["tool_call_id"] is None
    assert events[-2].data["message"]
    assert events[-1].data == {"reason": "error"}
    seen = reader.text
    assert seen
    assert reply.startswith(seen)
    on_socket = await socket.finish(stream_id, timeout=5)
    socket_answer(on_socket)
    assert [e["event"] for e in on_socket[-2:]] == ["error", "done"]
    assert on_socket[-1]["seq"] == events[-1].seq

    again = await sending
    after = await survivor.sse(user, again.stream_id).finish(timeout=ttl + 5)
    assert after[-1].data == {"reason": "completed"}
    assert after[-1].at - killed_at <= ttl + 5
    assert sse_answer(after) == reply
    assert user.id in await survivor.owned_sessions()

    # The partial answer is stored as interrupted, once; the new one as completed.
    both = answered({stream_id, again.stream_id})
    messages = await journal_when(survivor, user, both, "both answers stored")
    answers = answers_by_stream(messages)
    [interrupted] = answers[stream_id]
    assert interrupted["metadata"]["status"] == "interrupted"
    assert interrupted["content"]
    assert reply.startswith(interrupted["content"])
    [completed] = answers[again.stream_id]
    assert "status" not in completed["metadata"]
    assert completed["content"] == reply
    assert sorted(m["content"] for m in messages if m["role"] == "user") == [
        "are you still there?",
        "tell me a long story",
    ]


@pytest.mark.fault
@pytest.mark.timeout(120)
async def test_an_answer_whose_save_fails_is_stored_once_postgres_is_back(
    make_cluster: MakeCluster, private_server: Callable[[str], EmbeddedServer]
) -> None:
    postgres = private_server("postgres")
    reply = long_reply(60, "saved")  # 3 s at PACE
    cluster = await make_cluster(
        replies=(reply,), database_url=postgres.url, main_agent_mock_words_per_second=PACE
    )
    [instance] = await cluster.start()
    user = await cluster.user()
    accepted = await cluster.send(user, "keep this", instance)
    reader = instance.sse(user, accepted.stream_id)
    await reader.wait(lambda events: words_in(events) >= 3, 10, "three words")

    await asyncio.to_thread(postgres.stop)
    stopped_at = time.monotonic()
    assert reader.done is None, "the turn ended before PostgreSQL stopped: lengthen the reply"
    await reader.wait(lambda _: reader.text == reply, 10, "the whole reply")
    # PostgreSQL stays down 30 s; the answer cannot be stored, so no done meanwhile.
    await until(
        lambda: reader.done is not None or time.monotonic() - stopped_at >= 30,
        40,
        "30 s of outage",
    )
    assert reader.done is None, f"done while PostgreSQL was down: {reader.done}"

    restarted_at = time.monotonic()
    await asyncio.to_thread(postgres.start)
    events = await reader.finish(timeout=30)
    assert events[-1].at > restarted_at
    assert events[-1].data == {"reason": "completed"}
    assert sse_answer(events) == reply

    stored = answered({accepted.stream_id})
    messages = await journal_when(instance, user, stored, "the answer stored")
    [answer] = answers_by_stream(messages)[accepted.stream_id]
    assert answer["content"] == reply
    assert answer["metadata"].get("status") not in {"error", "interrupted"}
    assert [m["role"] for m in messages] == ["user", "assistant"]


class Load:
    """Users chatting through random instances, each following every answer to its done."""

    def __init__(self, cluster: Cluster, users: list[User]) -> None:
        self.cluster = cluster
        self.acknowledged: list[tuple[User, Accepted]] = []
        self.finished: dict[str, SseEvent] = {}  # stream id: its done, as a reader saw it
        self._stopping = asyncio.Event()
        self._tasks = [asyncio.create_task(self._chat(user)) for user in users]

    def _instance(self) -> Instance:
        """As a load balancer that has not yet noticed an instance stopping."""
        return random.choice([i for i in self.cluster.instances if i.url and i.running])

    async def _chat(self, user: User) -> None:
        turn = 0
        while not self._stopping.is_set():
            message = f"{user.email} turn {turn}"
            accepted = await self.cluster.send(user, message, self._instance, timeout=30)
            self.acknowledged.append((user, accepted))
            await self._follow(user, accepted.stream_id)
            turn += 1
            await asyncio.sleep(0.05)  # pace: a person reading the answer

    async def _follow(self, user: User, stream_id: str) -> None:
        """Read the stream to its done on any instance, resuming elsewhere when one goes
        away (a broken connection, 503, or an end before done); anything else fails."""
        last: int | None = None
        deadline = time.monotonic() + 30
        while True:
            reader = self._instance().sse(user, stream_id, last_event_id=last)
            await reader.wait_end(30)
            if reader.status is not None and reader.status not in {200, *RETRYABLE}:
                raise AssertionError(f"an acknowledged stream refused: {reader}")
            if reader.events:
                last = reader.events[-1].seq
            if reader.done is not None:
                self.finished[stream_id] = reader.done
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{stream_id} never reached done; last read: {reader}")
            await asyncio.sleep(0.1)  # back off before trying another instance

    async def more_turns(self, count: int) -> None:
        """Until ``count`` more messages were acknowledged; a failed sender fails this."""
        target = len(self.acknowledged) + count

        def progressed() -> bool:
            for task in self._tasks:
                if task.done():
                    task.result()  # raises what ended the sender
                    raise AssertionError("a sender stopped")
            return len(self.acknowledged) >= target

        await until(progressed, 30, f"{count} more turns")

    async def stop(self) -> None:
        self._stopping.set()
        outcomes = await asyncio.wait_for(
            asyncio.gather(*self._tasks, return_exceptions=True), timeout=60
        )
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        assert not failures, failures

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()


@pytest.mark.fault
@pytest.mark.timeout(120)
async def test_a_rolling_restart_under_load_answers_every_acknowledged_message_once(
    make_cluster: MakeCluster,
) -> None:
    # 200 ms turns: SIGTERM finds turns running, and readers on the instance going away.
    cluster = await make_cluster(
        replies=(long_reply(10, "roll"),), main_agent_mock_words_per_second=50
    )
    originals = await cluster.start(3)
    users = [await cluster.user(f"User {n}") for n in range(3)]
    load = Load(cluster, users)
    try:
        for old in originals:
            await load.more_turns(5)
            assert await old.stop() == 0, old.log_tail()
            await cluster.start()
        await load.more_turns(5)
    except BaseException:
        load.cancel()
        raise
    await load.stop()

    streams = [accepted.stream_id for _, accepted in load.acknowledged]
    assert len(set(streams)) == len(streams)
    assert load.finished.keys() == set(streams)  # every acknowledged turn reached its done
    [reader, *_] = cluster.serving()
    for user in users:
        mine = [accepted for owner, accepted in load.acknowledged if owner is user]
        expected = {accepted.stream_id for accepted in mine}
        messages = await journal_when(reader, user, answered(expected), "every answer")
        questions = [m["content"] for m in messages if m["role"] == "user"]
        answers = answers_by_stream(messages)
        for accepted in mine:
            assert questions.count(accepted.message) == 1, accepted
            assert len(answers[accepted.stream_id]) == 1, answers[accepted.stream_id]
        duplicated = {stream: found for stream, found in answers.items() if len(found) > 1}
        assert not duplicated, duplicated


@pytest.mark.fault
async def test_sigterm_stores_the_running_turn_and_hands_its_users_over_at_once(
    make_cluster: MakeCluster,
) -> None:
    reply = long_reply(40, "last")  # 2 s at PACE: still running when SIGTERM comes
    cluster = await make_cluster(replies=(reply,), chat_lease_ttl_seconds=8)
    leaving = cluster.launch(main_agent_mock_words_per_second=PACE)
    staying = cluster.launch()
    await asyncio.gather(leaving.wait_ready(), staying.wait_ready())
    user = await cluster.user()
    socket = await leaving.socket(user)
    await socket.ping()
    sent = await leaving.post_message(user, "one more thing", uuid.uuid4())
    assert sent.status == 200, sent
    stream_id = sent.body["stream_id"]
    assert user.id in await leaving.owned_sessions()
    reader = staying.sse(user, stream_id)
    await reader.wait(lambda events: words_in(events) >= 3, 10, "three words")

    assert await leaving.stop() == 0, leaving.log_tail()
    exited_at = time.monotonic()
    assert await socket.wait_closed(5) == 1001
    assert socket.done(stream_id) is not None, "the socket closed before the turn's done"
    events = await reader.finish(timeout=10)
    assert [e.event for e in events].count("done") == 1

    again = await cluster.send(user, "anyone home?", staying, timeout=10)
    after = await staying.sse(user, again.stream_id).finish(timeout=10)
    assert after[-1].data == {"reason": "completed"}
    assert after[-1].at - exited_at < 2.5, "the next turn waited for the lease to expire"
    assert user.id in await staying.owned_sessions()

    both = answered({stream_id, again.stream_id})
    messages = await journal_when(staying, user, both, "both answers stored")
    answers = answers_by_stream(messages)
    [stored] = answers[stream_id]
    assert stored["content"]
    assert reply.startswith(stored["content"])
    assert len(answers[again.stream_id]) == 1
