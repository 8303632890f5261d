"""A chat turn as it runs on the event loop, reporting to its SessionActor.

The model stream and tools are async I/O, so the turn is a task on the loop;
the SessionActor starts it and owns everything it produces. Events are handed
to the actor in batches: all events emitted within one loop iteration travel
in one message. Whatever ends the turn — an answer, a failure, a cancel — its
outcome is logged, then its assistant message is stored through the
JournalActor (retried through a PostgreSQL outage) before the actor hears
``TurnFinished``, so ``done`` never precedes durability. A turn whose owner
died is ended the same way by its next owner, from what the log holds.

An answer the database refuses for what it holds (a NUL character, a value
too long), which no retry can change, is not retried: a repaired copy is
stored at once (such characters replaced, and, past a size limit, its end
cut off), its metadata says so, and the turn ends with ``error`` saying so.
The reader has had the answer as it was; the journal keeps all it can of it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import asyncpg

from exobrain.actors.journal import (
    JOURNAL_ERRORS,
    AppendMessages,
    Fenced,
    NewMessage,
    NewToolCall,
    append,
)
from exobrain.agent.events import Event
from exobrain.agent.model import Model
from exobrain.agent.tools import Tools
from exobrain.agent.turn import RecordedToolCall, TurnFailed, TurnState, run_turn
from exobrain.supervision import ChildHandle

from .log import EventLog, Orphan
from .messages import TurnEvents, TurnFinished
from .stream import StreamEvent, TurnOutcome

log = logging.getLogger(__name__)

#: Namespace for the assistant message's client id: one answer per stream, even if retried.
_ANSWERS = uuid.UUID("0b7c2d40-6a51-4f0e-8d0a-3c1f5e9a7b21")

#: The longest pause between attempts to store an answer through an outage.
_SAVE_RETRY_MAX = 5.0

#: What a refused answer's repaired copy replaces: characters PostgreSQL or JSON
#: cannot hold (NUL, lone surrogates).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
#: Where a repaired answer is cut when its size was refused (jsonb holds 256 MB).
_REPAIRED_MAX_CHARS = 10_000_000

#: What the reader of a turn whose answer was refused is told, with ``done {reason: "error"}``.
REPAIRED = "the answer could not be stored as it is; a repaired copy is stored"

#: What a reader of an orphaned turn is told, with ``done {reason: "error"}``.
INTERRUPTED = "the assistant was interrupted; its answer so far is stored"

#: ``TurnFinished.reason`` of a turn whose user was taken over: its new owner ends it.
ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class Agent:
    """What every turn needs, built once per application."""

    model: Model
    tools: Tools
    system_prompt: str
    journal: ChildHandle
    max_steps: int
    tool_timeout: float
    write_timeout: float
    save_deadline: float
    log: EventLog


@dataclass(frozen=True, slots=True)
class TurnRequest:
    user_id: uuid.UUID
    reference: str
    stream_id: uuid.UUID
    history: tuple[dict[str, str], ...]
    text: str
    epoch: int


async def run_chat_turn(
    agent: Agent, request: TurnRequest, report: Callable[[Any], None]
) -> TurnFinished:
    """Run the turn; the outcome is both reported to the actor and returned."""
    loop = asyncio.get_running_loop()
    pending: list[Event] = []

    def flush() -> None:
        if pending:
            batch = tuple(pending)
            pending.clear()
            report(TurnEvents(request.stream_id, batch))

    def emit(event: Event) -> None:
        if not pending:
            loop.call_soon(flush)
        pending.append(event)

    state = TurnState()
    started = time.monotonic()
    reason, error = "completed", None
    messages: Sequence[dict[str, Any]] = (
        {"role": "system", "content": agent.system_prompt},
        *request.history,
        {"role": "user", "content": request.text},
    )
    try:
        await run_turn(
            agent.model, messages, agent.tools, emit, state,
            max_steps=agent.max_steps, tool_timeout=agent.tool_timeout,
        )  # fmt: skip
    except TurnFailed as exc:
        reason, error = "error", str(exc)
    except asyncio.CancelledError:
        reason = "cancelled"
    except Exception:
        log.exception("turn %s failed", request.stream_id)
        reason, error = "error", "the assistant failed unexpectedly"
    flush()
    metadata: dict[str, Any] = {
        "model": agent.model.name,
        "finish_reason": state.finish_reason,
        "duration_ms": round((time.monotonic() - started) * 1000, 1),
        "stream_id": str(request.stream_id),
    }
    if state.usage:
        metadata["usage"] = state.usage
    if reason != "completed":
        metadata["status"] = reason
    outcome = TurnOutcome(request.stream_id, reason, error, MappingProxyType(metadata))
    return await _conclude(agent, request, state, outcome, report)


async def finish_orphan(
    agent: Agent, request: TurnRequest, orphan: Orphan, report: Callable[[Any], None]
) -> TurnFinished:
    """End a turn whose owner died: store what the log holds of its answer.

    With the owner's outcome logged, the answer was complete and is stored as the
    owner meant to; without it, the partial answer is stored as ``interrupted``.
    """
    outcome = orphan.outcome or TurnOutcome(
        request.stream_id,
        "error",
        INTERRUPTED,
        MappingProxyType(
            {
                "model": agent.model.name,
                "stream_id": str(request.stream_id),
                "status": "interrupted",
            }
        ),
    )
    return await _conclude(agent, request, replayed(orphan.events), outcome, report)


async def _conclude(
    agent: Agent,
    request: TurnRequest,
    state: TurnState,
    outcome: TurnOutcome,
    report: Callable[[Any], None],
) -> TurnFinished:
    """Log the outcome, store the answer (retrying through outages), then report the end.

    The outcome goes to the log straight from here: where it falls among the stream's
    events does not matter (it is read by stream, not by position).
    """
    agent.log.write(request.user_id, request.stream_id, [outcome])
    reason, error = outcome.reason, outcome.error
    try:
        if await asyncio.shield(_save(agent, request, state, outcome)):
            reason, error = "error", REPAIRED
    except Fenced:
        log.warning("turn %s: the user was taken over; its new owner ends it", request.stream_id)
        reason, error = ABANDONED, None
    except Exception as exc:
        log.error("could not store the answer of turn %s: %r", request.stream_id, exc)
        reason, error = "error", "the answer could not be saved"
    finished = TurnFinished(request.stream_id, reason, error, state.text)
    report(finished)
    return finished


async def _save(agent: Agent, request: TurnRequest, state: TurnState, outcome: TurnOutcome) -> bool:
    """Store the answer; True if only a repaired copy of it could be."""
    answer = NewMessage(
        "assistant",
        state.text,
        client_message_id=answer_id(request.stream_id),
        metadata=outcome.metadata,
        tool_calls=tuple(
            NewToolCall(call.tool_call_id, call.title, call.description, call.response, call.error)
            for call in state.tool_calls
        ),
    )
    try:
        await _store(agent, request, answer)
        return False
    except JOURNAL_ERRORS as exc:
        log.error("turn %s: answer refused, storing it repaired: %r", request.stream_id, exc)
        await _store(agent, request, repaired(answer, exc))
        return True


async def _store(agent: Agent, request: TurnRequest, answer: NewMessage) -> None:
    """Through an outage, retry until ``CHAT_ANSWER_SAVE_DEADLINE_SECONDS``; a refusal of
    the answer itself (:data:`JOURNAL_ERRORS`) would come again, so it is raised at once."""
    command = AppendMessages(request.user_id, request.reference, (answer,), request.epoch)
    deadline = time.monotonic() + agent.save_deadline
    delay = 0.1
    while True:
        try:
            await append(agent.journal, command, timeout=agent.write_timeout)
            return
        except (Fenced, *JOURNAL_ERRORS):
            raise
        except Exception as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("turn %s: storing the answer failed, retrying: %r", request.stream_id, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _SAVE_RETRY_MAX)


def repaired(answer: NewMessage, refusal: Exception) -> NewMessage:
    """``answer`` as the journal can hold it, its metadata saying what was changed and why."""
    text, replaced = _UNSTORABLE.subn("\ufffd", answer.content)
    cut = isinstance(refusal, asyncpg.ProgramLimitExceededError) and len(text) > _REPAIRED_MAX_CHARS
    note = {
        "refused": getattr(refusal, "sqlstate", None) or type(refusal).__name__,
        "replaced_characters": replaced,
        "chars": len(answer.content),
        "truncated": cut,
    }
    return NewMessage(
        "assistant",
        text[:_REPAIRED_MAX_CHARS] if cut else text,
        client_message_id=answer.client_message_id,
        metadata={**answer.metadata, "repair": note},
        tool_calls=tuple(
            NewToolCall(
                _storable(call.tool_call_id),
                _storable(call.title),
                _storable(call.description),
                None if call.response is None else _storable(call.response),
                None if call.error is None else _storable(call.error),
            )
            for call in answer.tool_calls
        ),
    )


def _storable(text: str) -> str:
    return _UNSTORABLE.sub("\ufffd", text)


def answer_id(stream_id: uuid.UUID) -> uuid.UUID:
    """The answer's client message id: one answer per stream, whoever stores it."""
    return uuid.uuid5(_ANSWERS, str(stream_id))


def replayed(events: Sequence[StreamEvent]) -> TurnState:
    """The answer and tool calls a turn's logged events add up to."""
    state = TurnState()
    calls: dict[str, RecordedToolCall] = {}
    chunks = []
    for event in events:
        data = event.data
        match event.name:
            case "message_chunk":
                chunks.append(data["text"])
            case "tool_call":
                call = calls[data["tool_call_id"]] = RecordedToolCall(
                    data["tool_call_id"], data["title"], data["description"]
                )
                state.tool_calls.append(call)
            case "tool_response" if data["tool_call_id"] in calls:
                calls[data["tool_call_id"]].response = data["message"]
            case "error" if data.get("tool_call_id") in calls:
                calls[data["tool_call_id"]].error = data["message"]
    state.pieces = chunks
    return state
