"""Model streams, normalised: what the turn loop reads from any model.

The turn loop reads :class:`Piece` values and never sees the provider's types,
so the mock model (``mock``) exercises exactly the same loop, events and
persistence as the OpenAI-compatible provider (``provider``, imported only
where it is used: the openai client costs 13 MB of memory or more).
Provider failures become :class:`ModelError` with a sentence a user can read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


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
