"""The turn loop driving the real openai client against a local fake provider."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import orjson
import pytest
from fake_provider import Failure, FakeProvider, Stream, serve, text, tool_calls

from exobrain.agent.events import Event, wire
from exobrain.agent.mock import MockModel, MockReplies, load_messages
from exobrain.agent.prompt import system_prompt
from exobrain.agent.provider import OpenAIModel
from exobrain.agent.tools import MockBackend, build_tools
from exobrain.agent.turn import TurnFailed, TurnState, run_turn
from exobrain.embedded import free_port

SEARCH = '{"query": "sleep and memory", "max_results": 2}'
FETCH = '{"url": "https://example.org/reviews/sleep-memory"}'
MESSAGES = [{"role": "system", "content": system_prompt()}, {"role": "user", "content": "hi"}]


@pytest.fixture
async def provider() -> AsyncIterator[tuple[FakeProvider, OpenAIModel]]:
    fake = FakeProvider()
    async for url in serve(fake):
        client = openai.AsyncOpenAI(base_url=url, api_key="test", max_retries=0, timeout=2.0)
        yield fake, OpenAIModel(client, "agent", 0.3)
        await client.close()


async def play(
    model: Any, max_steps: int = 4
) -> tuple[list[tuple[str, dict[str, Any]]], TurnState]:
    events: list[Event] = []
    state = TurnState()
    tools = build_tools(MockBackend(None))
    await run_turn(
        model, MESSAGES, tools, events.append, state, max_steps=max_steps, tool_timeout=2
    )
    return [wire(event) for event in events], state


async def test_text_streams_as_chunks_in_order(
    provider: tuple[FakeProvider, OpenAIModel],
) -> None:
    fake, model = provider
    fake.scripts.append(text("Hel", "lo ", "there"))
    events, state = await play(model)
    assert events == [
        ("message_chunk", {"text": "Hel"}),
        ("message_chunk", {"text": "lo "}),
        ("message_chunk", {"text": "there"}),
    ]
    assert (state.text, state.finish_reason) == ("Hello there", "stop")
    assert state.usage == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
    [request] = fake.requests
    assert (request["model"], request["temperature"], request["stream"]) == ("agent", 0.3, True)
    assert request["messages"] == MESSAGES
    assert {tool["function"]["name"] for tool in request["tools"]} == {"web_search", "web_fetch"}


async def test_two_parallel_tool_calls_split_over_deltas(
    provider: tuple[FakeProvider, OpenAIModel],
) -> None:
    fake, model = provider
    fake.scripts += [
        tool_calls(("call_s", "web_search", SEARCH), ("call_f", "web_fetch", FETCH), split=4),
        text("Sleep helps memory."),
    ]
    events, state = await play(model)
    assert events == [
        ("tool_call", {"tool_call_id": "call_s", "title": "Web search",
                       "description": "Searching the web for sleep and memory"}),
        ("tool_call", {"tool_call_id": "call_f", "title": "Web fetch",
                       "description": "Looking at https://example.org/reviews/sleep-memory"}),
        ("tool_response", {"tool_call_id": "call_s", "message": "Found 2 candidate sources"}),
        ("tool_response", {"tool_call_id": "call_f",
                           "message": "Summarized Sleep and memory consolidation: a review"}),
        ("message_chunk", {"text": "Sleep helps memory."}),
    ]  # fmt: skip
    assert [call.response for call in state.tool_calls] == [
        "Found 2 candidate sources",
        "Summarized Sleep and memory consolidation: a review",
    ]
    follow_up = fake.requests[1]["messages"]
    assert [call["id"] for call in follow_up[2]["tool_calls"]] == ["call_s", "call_f"]
    assert follow_up[2]["tool_calls"][0]["function"]["arguments"] == SEARCH
    results = {
        message["tool_call_id"]: orjson.loads(message["content"]) for message in follow_up[3:]
    }
    assert len(results["call_s"]["results"]) == 2
    assert results["call_f"]["title"] == "Sleep and memory consolidation: a review"
    assert results["call_f"]["content_truncated"] is False


async def test_a_failing_tool_reports_and_the_turn_goes_on(
    provider: tuple[FakeProvider, OpenAIModel],
) -> None:
    fake, model = provider
    fake.scripts += [
        tool_calls(("call_x", "web_fetch", '{"url": "https://nowhere.example/x"}')),
        tool_calls(("call_y", "web_search", '{"query": ""}')),
        text("Sorry, I could not read that page."),
    ]
    events, state = await play(model)
    names = [name for name, _ in events]
    assert names == ["tool_call", "error", "tool_call", "error", "message_chunk"]
    assert events[1] == (
        "error",
        {
            "tool_call_id": "call_x",
            "message": "could not fetch https://nowhere.example/x: not in the mock web",
        },
    )
    assert events[3][1]["tool_call_id"] == "call_y"
    assert "query" in events[3][1]["message"]
    assert [call.error is not None for call in state.tool_calls] == [True, True]
    tool_message = fake.requests[1]["messages"][-1]
    assert orjson.loads(tool_message["content"])["error"].startswith("could not fetch")
    assert state.text == "Sorry, I could not read that page."


async def test_step_limit_ends_a_turn_that_never_answers(
    provider: tuple[FakeProvider, OpenAIModel],
) -> None:
    fake, model = provider
    fake.scripts += [tool_calls((f"call_{n}", "web_search", SEARCH)) for n in range(3)]
    with pytest.raises(TurnFailed, match="after 3 model steps"):
        await play(model, max_steps=3)
    assert len(fake.requests) == 3


@pytest.mark.parametrize(
    ("script", "complaint"),
    [
        (Failure(500, "upstream exploded"), r"refused the request \(500: upstream exploded\)"),
        (Failure(400, "bad model"), r"refused the request \(400: bad model\)"),
        (Stream(text("a", "b").chunks, malformed_after=2), "malformed stream"),
        (Stream(text("a", "b").chunks, stall_after=2), "did not answer in time"),
    ],
)
async def test_provider_failures_are_reported_in_plain_words(
    provider: tuple[FakeProvider, OpenAIModel], script: Stream | Failure, complaint: str
) -> None:
    fake, model = provider
    fake.scripts.append(script)
    state = TurnState()
    with pytest.raises(TurnFailed, match=complaint):
        await run_turn(model, MESSAGES, {}, lambda event: None, state, max_steps=2, tool_timeout=1)


async def test_an_unreachable_provider_is_named() -> None:
    client = openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="t", max_retries=0, timeout=2
    )
    with pytest.raises(TurnFailed, match="unreachable"):
        await run_turn(
            OpenAIModel(client, "agent", 0), MESSAGES, {}, lambda e: None, TurnState(),
            max_steps=1, tool_timeout=1,
        )  # fmt: skip
    await client.close()


async def test_a_cancelled_turn_keeps_its_partial_text(
    provider: tuple[FakeProvider, OpenAIModel],
) -> None:
    fake, model = provider
    fake.scripts.append(Stream(text("partial ", "answer", " never sent").chunks, stall_after=3))
    state = TurnState()
    seen = asyncio.Event()

    def emit(event: Event) -> None:
        if state.text == "partial answer":
            seen.set()

    turn = asyncio.create_task(
        run_turn(model, MESSAGES, {}, emit, state, max_steps=1, tool_timeout=1)
    )
    await asyncio.wait_for(seen.wait(), timeout=5)
    turn.cancel()
    with pytest.raises(asyncio.CancelledError):
        await turn
    assert state.text == "partial answer"


async def test_the_mock_model_streams_words_through_the_same_loop(tmp_path: Path) -> None:
    replies = MockReplies(load_messages(None))
    expected = load_messages(None)[0].text
    events, state = await play(MockModel(replies))
    assert state.text == expected
    assert "".join(data["text"] for _, data in events) == expected
    assert len(events) > 20  # word-sized chunks
