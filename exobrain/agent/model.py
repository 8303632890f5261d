"""Model streams, normalised: the OpenAI-compatible provider, or the mock model.

The turn loop reads :class:`Piece` values and never sees the provider's types,
so the mock model exercises exactly the same loop, events and persistence.
Provider failures become :class:`ModelError` with a sentence a user can read.
The provider lives in :mod:`exobrain.agent.provider`, so that the openai
client (13 MB of memory or more) is imported only where it is used.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .mock import MockReplies, words


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a tool call; ``index`` ties fragments of one call together."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Piece:
    text: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    finish_reason: str | None = None
    usage: dict[str, int] | None = None


class ModelError(Exception):
    """The model could not answer; the message says why in plain words."""


class Model(Protocol):
    name: str

    def stream(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]
    ) -> AsyncIterator[Piece]: ...


@dataclass
class MockModel:
    """Answers every turn with the next canned reply, in word-sized pieces.

    ``words_per_second`` paces it like a model (0: as fast as the loop goes), so
    that streaming, cancelling and a turn cut short can be seen without one.
    """

    replies: MockReplies
    name: str = "mock"
    words_per_second: float = 0.0

    async def stream(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]
    ) -> AsyncIterator[Piece]:
        reply = self.replies.next()
        pause = 1 / self.words_per_second if self.words_per_second else 0.0
        for word in words(reply):
            if pause:
                await asyncio.sleep(pause)
            yield Piece(text=word)
        yield Piece(finish_reason="stop")
