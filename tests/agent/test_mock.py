"""The mock model: its message file, cycling, scripted tool calls, clear start-up errors."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from exobrain.agent.events import Event, wire
from exobrain.agent.mock import MockMessagesError, MockModel, MockReplies, load_messages, words
from exobrain.agent.tools import MockBackend, build_tools
from exobrain.agent.turn import TurnState, run_turn


def test_messages_are_split_on_the_separator_line(tmp_path: Path) -> None:
    path = tmp_path / "replies.md"
    path.write_text("First *reply*.\n\n--- message ---\n\nSecond\n\nwith a paragraph.\n")
    texts = [reply.text for reply in load_messages(path)]
    assert texts == ["First *reply*.", "Second\n\nwith a paragraph."]


def test_replies_cycle_in_order(tmp_path: Path) -> None:
    path = tmp_path / "replies.md"
    path.write_text("one\n\n--- message ---\n\ntwo\n")
    replies = MockReplies(load_messages(path))
    drawn = [replies.next() for _ in range(5)]
    assert [(index, reply.text) for index, reply in drawn] == [
        (0, "one"),
        (1, "two"),
        (0, "one"),
        (1, "two"),
        (0, "one"),
    ]


def test_built_in_samples_cover_the_rich_markdown() -> None:
    samples = "\n".join(reply.text for reply in load_messages(None))
    assert "| --- |" in samples  # a table
    assert "$$" in samples  # display math
    assert "```mermaid" in samples
    assert "\n1. " in samples  # a list


@pytest.mark.parametrize("content", ["", "\n\n", "\n\n--- message ---\n\n"])
def test_an_empty_file_is_refused_clearly(tmp_path: Path, content: str) -> None:
    path = tmp_path / "empty.md"
    path.write_text(content)
    with pytest.raises(MockMessagesError, match="holds no message"):
        load_messages(path)


def test_a_missing_file_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(MockMessagesError, match="cannot read"):
        load_messages(tmp_path / "nope.md")


def test_words_concatenate_back_exactly() -> None:
    text = "Hello  world,\n\n| a | b |\n$$x$$ end"
    pieces = list(words(text))
    assert "".join(pieces) == text
    assert len(pieces) > 5


SCRIPTED = """@web_search {"query": "{{message}}", "max_results": 2}

You asked: {{message}}. I found:

{{results}}

--- message ---

Plain words.
"""


HITS = [
    {"title": f"Sleep study {n}", "url": f"https://example.org/{n}", "snippet": "", "score": 0.9}
    for n in (1, 2, 3)
]


async def play(
    replies: MockReplies, message: str, *, offered: bool = True, tmp_path: Path | None = None
) -> tuple[list[tuple[str, dict[str, Any]]], TurnState]:
    events: list[Event] = []
    state = TurnState()
    web = None
    if tmp_path is not None:
        web = tmp_path / "web.json"
        web.write_bytes(orjson.dumps({"search": [{**hit, "published_at": None} for hit in HITS]}))
    tools = build_tools(MockBackend(web)) if offered else {}
    conversation = [{"role": "user", "content": message}]
    await run_turn(
        MockModel(replies), conversation, tools, events.append, state, max_steps=4, tool_timeout=2
    )
    return [wire(event) for event in events], state


async def test_a_scripted_reply_calls_its_tool_then_streams_the_results(tmp_path: Path) -> None:
    path = tmp_path / "replies.md"
    path.write_text(SCRIPTED)
    replies = MockReplies(load_messages(path))
    events, state = await play(replies, 'sleep "and" memory', tmp_path=tmp_path)
    names = [name for name, _ in events]
    assert names[:2] == ["tool_call", "tool_response"]
    assert set(names[2:]) == {"message_chunk"}
    assert events[0][1]["description"].endswith('sleep "and" memory')  # the message, as JSON
    assert state.text == (
        'You asked: sleep "and" memory. I found:\n\n'
        "- Sleep study 1 (https://example.org/1)\n- Sleep study 2 (https://example.org/2)"
    )
    assert (state.steps, state.finish_reason) == (2, "stop")
    _, after = await play(replies, "next")  # the script's continuation drew no reply
    assert after.text == "Plain words."


async def test_a_tool_the_session_does_not_offer_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "replies.md"
    path.write_text(SCRIPTED)
    events, state = await play(MockReplies(load_messages(path)), "tea", offered=False)
    assert {name for name, _ in events} == {"message_chunk"}
    assert state.text.startswith("You asked: tea. I found:\n\n(no tool was offered)")


async def test_concurrent_turns_each_continue_their_own_reply(tmp_path: Path) -> None:
    """Another session drawing a reply while the tools run must not change this turn's."""
    path = tmp_path / "replies.md"
    path.write_text(SCRIPTED.replace("Plain words.", '@web_search {"query": "b"}\n\nSecond.'))
    replies = MockReplies(load_messages(path))
    (_, first), (_, second) = await asyncio.gather(play(replies, "a"), play(replies, "b"))
    assert first.text.startswith("You asked: a.")
    assert second.text == "Second."


def test_a_tool_line_without_json_arguments_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "replies.md"
    path.write_text("@web_search {not json}\n\ntext\n")
    with pytest.raises(MockMessagesError, match="arguments of @web_search are not JSON"):
        load_messages(path)
