"""One chat turn: stream the model, run the tools it asks for, feed results back.

Events go to ``emit`` as they happen. The turn's progress lives in a
:class:`TurnState` the caller holds, so a cancelled or failed turn still
leaves its partial answer and tool calls to be stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from .events import Error, Event, MessageChunk, ToolCall, ToolResponse
from .model import Model, ModelError, ToolCallDelta
from .tools import Tool, ToolError


@dataclass
class RecordedToolCall:
    tool_call_id: str
    title: str
    description: str
    response: str | None = None
    error: str | None = None


@dataclass
class TurnState:
    """What the turn produced so far; read it after the turn ends, however it ended."""

    #: The answer as it streamed, joined when read: growing one string by each piece would
    #: copy it whole every time (a 20,000-word answer took 0.8 s of the loop).
    pieces: list[str] = field(default_factory=list)
    tool_calls: list[RecordedToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    steps: int = 0

    @property
    def text(self) -> str:
        return "".join(self.pieces)


class TurnFailed(Exception):
    """The turn cannot go on; the message is for the user."""


@dataclass(frozen=True, slots=True)
class _PendingCall:
    id: str
    name: str
    arguments: str


async def run_turn(
    model: Model,
    messages: Sequence[dict[str, Any]],
    tools: Mapping[str, Tool[Any]],
    emit: Callable[[Event], None],
    state: TurnState,
    *,
    max_steps: int,
    tool_timeout: float,
) -> None:
    """Run until the model answers without tools; raise :class:`TurnFailed` otherwise."""
    conversation = list(messages)
    specs = [tool.spec() for tool in tools.values()]
    while True:
        if state.steps >= max_steps:
            raise TurnFailed(f"stopped after {max_steps} model steps without a final answer")
        state.steps += 1
        calls = await _stream_step(model, conversation, specs, emit, state)
        if not calls:
            return
        conversation.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }
                    for call in calls
                ],
            }
        )
        results = await _run_tools(calls, tools, emit, state, tool_timeout)
        conversation.extend(
            {"role": "tool", "tool_call_id": call.id, "content": content}
            for call, content in zip(calls, results, strict=True)
        )


async def _stream_step(
    model: Model,
    conversation: list[dict[str, Any]],
    specs: list[dict[str, Any]],
    emit: Callable[[Event], None],
    state: TurnState,
) -> list[_PendingCall]:
    """One model call: stream its text, collect its tool calls (split over many deltas)."""
    fragments: dict[int, list[ToolCallDelta]] = {}
    try:
        async for piece in model.stream(conversation, specs):
            if piece.text:
                state.pieces.append(piece.text)
                emit(MessageChunk(piece.text))
            for delta in piece.tool_calls:
                fragments.setdefault(delta.index, []).append(delta)
            if piece.finish_reason:
                state.finish_reason = piece.finish_reason
            if piece.usage:
                for key, value in piece.usage.items():
                    state.usage[key] = state.usage.get(key, 0) + value
    except ModelError as exc:
        raise TurnFailed(str(exc)) from exc
    return [_assemble(index, parts) for index, parts in sorted(fragments.items())]


def _assemble(index: int, parts: list[ToolCallDelta]) -> _PendingCall:
    call_id = next((part.id for part in parts if part.id), None) or f"call_{index}"
    name = "".join(part.name for part in parts if part.name)
    return _PendingCall(call_id, name, "".join(part.arguments for part in parts))


async def _run_tools(
    calls: list[_PendingCall],
    tools: Mapping[str, Tool[Any]],
    emit: Callable[[Event], None],
    state: TurnState,
    timeout: float,
) -> list[str]:
    """Announce every call in order, run them together, report in order."""
    prepared: list[tuple[Tool[Any], Any] | ToolError] = []
    for call in calls:
        tool = tools.get(call.name)
        try:
            if tool is None:
                raise ToolError(f"there is no tool named {call.name!r}")
            arguments = tool.parse(call.arguments)
            title, description = tool.announce(arguments)
            prepared.append((tool, arguments))
        except ToolError as exc:
            title, description = call.name or "Tool", "Could not run this tool"
            prepared.append(exc)
        record = RecordedToolCall(call.id, title, description)
        state.tool_calls.append(record)
        emit(ToolCall(call.id, title, description))

    async def run(step: tuple[Tool[Any], Any] | ToolError) -> Any:
        if isinstance(step, ToolError):
            raise step
        tool, arguments = step
        async with asyncio.timeout(timeout):
            return await tool.run(arguments)

    outcomes = await asyncio.gather(*(run(step) for step in prepared), return_exceptions=True)
    contents = []
    for call, record, outcome in zip(calls, state.tool_calls[-len(calls) :], outcomes, strict=True):
        if isinstance(outcome, asyncio.CancelledError):
            raise outcome
        if isinstance(outcome, BaseException):
            message = _failure(outcome, timeout)
            record.error = message
            emit(Error(call.id, message))
            contents.append(orjson.dumps({"error": message}).decode())
        else:
            record.response = outcome.summary
            emit(ToolResponse(call.id, outcome.summary))
            contents.append(outcome.content)
    return contents


def _failure(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"the tool did not finish within {timeout:g}s"
    if isinstance(exc, ToolError):
        return str(exc)
    return f"the tool failed unexpectedly ({type(exc).__name__})"
