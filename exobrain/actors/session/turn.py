"""A chat turn as it runs on the event loop, reporting to its SessionActor.

The model stream and tools are async I/O, so the turn is a task on the loop;
the SessionActor starts it and owns everything it produces. Events are handed
to the actor in batches: all events emitted within one loop iteration travel
in one message. Whatever ends the turn — an answer, a failure, a cancel — its
assistant message is stored through the JournalActor before the actor hears
``TurnFinished``, so ``done`` never precedes durability.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from exobrain.actors.journal import AppendMessages, NewMessage, NewToolCall, append
from exobrain.agent.events import Event
from exobrain.agent.model import Model
from exobrain.agent.tools import Tools
from exobrain.agent.turn import TurnFailed, TurnState, run_turn
from exobrain.supervision import ChildHandle

from .messages import TurnEvents, TurnFinished

log = logging.getLogger(__name__)

#: Namespace for the assistant message's client id: one answer per stream, even if retried.
_ANSWERS = uuid.UUID("0b7c2d40-6a51-4f0e-8d0a-3c1f5e9a7b21")


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


@dataclass(frozen=True, slots=True)
class TurnRequest:
    user_id: uuid.UUID
    reference: str
    stream_id: uuid.UUID
    history: tuple[dict[str, str], ...]
    text: str


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
    try:
        await asyncio.shield(
            _store_answer(agent, request, state, reason, time.monotonic() - started)
        )
    except Exception as exc:
        log.warning("could not store the answer of turn %s: %r", request.stream_id, exc)
        reason, error = "error", "the answer could not be saved"
    finished = TurnFinished(request.stream_id, reason, error, state.text)
    report(finished)
    return finished


async def _store_answer(
    agent: Agent, request: TurnRequest, state: TurnState, reason: str, seconds: float
) -> None:
    metadata: dict[str, Any] = {
        "model": agent.model.name,
        "finish_reason": state.finish_reason,
        "duration_ms": round(seconds * 1000, 1),
        "stream_id": str(request.stream_id),
    }
    if state.usage:
        metadata["usage"] = state.usage
    if reason != "completed":
        metadata["status"] = reason
    answer = NewMessage(
        "assistant",
        state.text,
        client_message_id=uuid.uuid5(_ANSWERS, str(request.stream_id)),
        metadata=metadata,
        tool_calls=tuple(
            NewToolCall(call.tool_call_id, call.title, call.description, call.response, call.error)
            for call in state.tool_calls
        ),
    )
    command = AppendMessages(request.user_id, request.reference, (answer,))
    await append(agent.journal, command, timeout=agent.write_timeout)
