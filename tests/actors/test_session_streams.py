"""What a session keeps of its streams: finished ones merged, all of them under one budget."""

from __future__ import annotations

import functools
import sys
import threading
import uuid
from typing import Any

from exobrain.actors.session import Item, StreamBudget, StreamEvent, StreamStarted
from exobrain.actors.session.stream import Stream
from exobrain.agent.events import Done, Error, Event, MessageChunk, ToolCall, ToolResponse


def _stream(budget: StreamBudget, evict: Any = lambda: None) -> Stream:
    started = StreamStarted(uuid.uuid4(), uuid.uuid4(), "2026/12/01", "a question")
    return Stream(started, budget.share(evict))


def _view(items: list[Item]) -> list[tuple[int, str, dict[str, Any], int | None]]:
    events = [item for item in items if isinstance(item, StreamEvent)]
    return [(event.seq, event.name, dict(event.data), event.first_seq) for event in events]


def test_a_finished_stream_is_kept_merged_and_resumes_exactly_after_any_number() -> None:
    budget = StreamBudget(1 << 30)
    stream = _stream(budget)
    batches: list[list[Event]] = [
        [MessageChunk("Let "), MessageChunk("me ")],
        [MessageChunk("look."), ToolCall("call_1", "Searching", "sleep")],
        [ToolResponse("call_1", "found 3"), MessageChunk("Sleep ")],
        [MessageChunk("helps "), MessageChunk("memory"), MessageChunk(".")],
        [Error("call_2", "a tool failed"), MessageChunk("Done.")],
    ]
    for batch in batches:
        stream.append(batch)
    running = {seq: _view(stream.after(seq)) for seq in range(stream.last_seq + 1)}
    running_bytes = budget.retained_bytes
    [done] = stream.append([Done("completed")])

    assert len(stream.events) == 7  # 2 merged runs, tool call and response, error, chunk, done
    ending = (done.seq, "done", {"reason": "completed"}, None)
    for seq, before in running.items():
        assert _view(stream.after(seq)) == [*before, ending]
    assert _view(stream.after(1))[0] == (3, "message_chunk", {"text": "me look."}, 2)
    assert _view(stream.after(2))[0] == (3, "message_chunk", {"text": "look."}, None)
    assert stream.after(done.seq) == []
    assert budget.retained_bytes == stream.nbytes < running_bytes


def test_a_long_answer_weighs_about_its_text_once_finished() -> None:
    budget = StreamBudget(1 << 30)
    stream = _stream(budget)
    words = [f"word{n} " for n in range(3000)]
    for start in range(0, len(words), 10):
        stream.append([MessageChunk(word) for word in words[start : start + 10]])
    running = budget.retained_bytes
    stream.append([Done("completed")])
    text = sum(map(len, words))

    assert running > 250 * len(words)  # an event per word
    assert text < budget.retained_bytes < 2 * text + 4 * len(words) + 2000
    resumed = _view(stream.after(1234))[0]
    assert resumed == (3000, "message_chunk", {"text": "".join(words[1234:])}, 1235)


def test_past_the_cap_the_oldest_finished_streams_go_first_and_running_ones_stay() -> None:
    answer: list[Event] = [MessageChunk("short "), MessageChunk("answer"), Done("completed")]
    probe = _stream(StreamBudget(1 << 30))
    probe.append(answer)
    evicted: list[str] = []
    budget = StreamBudget(3 * probe.nbytes + probe.nbytes // 2)  # room for three and a half
    for name in ("first", "second", "third"):
        _stream(budget, lambda name=name: evicted.append(name)).append(answer)
    assert evicted == []

    running = _stream(budget, lambda: evicted.append("running"))
    running.append([MessageChunk("x")])
    assert evicted == ["first"]  # only as many as the newcomer needs
    running.append([MessageChunk("y" * 20_000)])
    assert evicted == ["first", "second", "third"]
    assert budget.retained_bytes == running.nbytes > budget.max_bytes  # never evicted

    running.release()
    assert budget.retained_bytes == 0


def test_the_budget_stays_exact_while_many_sessions_change_it_at_once() -> None:
    """Sessions run on their own threads: what they report and what the cap evicts add up
    (without the lock, the sum or the evictions go astray in many runs)."""
    budget = StreamBudget(40_000)
    evictions: list[int] = []  # list.append is atomic: the evicting thread records it
    shares: list[list[Any]] = [[] for _ in range(8)]
    barrier = threading.Barrier(len(shares))

    def session(mine: list[Any], number: int) -> None:
        barrier.wait()
        for turn in range(3000):
            key = number * 100_000 + turn
            share = budget.share(functools.partial(evictions.append, key))
            mine.append((key, share))
            for size in range(1000, 6000, 1000):  # a running turn grows...
                share.resize(size)
            share.resize(700, finished=True)  # ...and shrinks when it finishes
            if turn % 4 == 0:
                mine[turn // 2][1].release()  # expired, or dropped past the per-user count

    threads = [threading.Thread(target=session, args=(s, n)) for n, s in enumerate(shares)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns often: an unguarded sum would go astray
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)

    everything = [entry for mine in shares for entry in mine]
    live = [share for _, share in everything if not share.released]
    assert budget.retained_bytes == sum(share.nbytes for share in live) <= budget.max_bytes
    assert len(evictions) == len(set(evictions)) > 0  # each evicted stream is told once
    assert {key for key, share in everything if share in live}.isdisjoint(evictions)
