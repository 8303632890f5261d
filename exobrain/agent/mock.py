"""The mock model: canned replies, streamed word by word through the real turn path.

Replies come from ``MAIN_AGENT_MOCK_MESSAGES_FILE`` (or the built-in samples):
messages separated by a line ``--- message ---`` with a blank line before and
after. They are used in turn, cycling, so a demo shows every sample.

A reply may script tool calls, so that tools and recall can be seen without a
model: lines at its start of the form ``@tool_name {"json": "arguments"}``
are called first (all in one step, as a model would), and the rest of the
reply is streamed once their results are in. In arguments and text,
``{{message}}`` is the user's message; in text, ``{{results}}`` lists what the
tools found. A scripted tool the session does not offer is skipped, as a model
could not call it.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from .model import Piece, ToolCallDelta

SEPARATOR = "\n\n--- message ---\n\n"
_WORD = re.compile(r"\S+\s*|\s+")
_DIRECTIVE = re.compile(r"@(\w+)[ \t]+(\{.*\})[ \t]*")
MESSAGE, RESULTS = "{{message}}", "{{results}}"
#: Tool call ids carry the reply's index, so the step after the tools continues that reply
#: whichever replies other sessions drew in between.
_CALL_ID = re.compile(r"mock-(\d+)-\d+")


class MockMessagesError(ValueError):
    """The mock messages file is missing, holds no message or a malformed tool line."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A canned reply: the tools it calls first (name, JSON arguments), then its text."""

    text: str
    calls: tuple[tuple[str, str], ...] = ()


def load_messages(path: Path | None) -> tuple[Reply, ...]:
    """The replies in ``path`` (None: the built-in samples); raises when there are none."""
    try:
        if path is None:
            text = resources.files(__package__).joinpath("mock_messages.md").read_text("utf-8")
        else:
            text = path.read_text("utf-8")
    except OSError as exc:
        raise MockMessagesError(
            f"MAIN_AGENT_MOCK_MESSAGES_FILE: cannot read {path}: {exc}"
        ) from exc
    parts = (part.strip() for part in text.replace("\r\n", "\n").split(SEPARATOR))
    replies = tuple(_reply(part, path) for part in parts if part)
    if not replies:
        raise MockMessagesError(f"MAIN_AGENT_MOCK_MESSAGES_FILE: {path} holds no message")
    return replies


def _reply(message: str, path: Path | None) -> Reply:
    lines = message.split("\n")
    calls = []
    while lines and (directive := _DIRECTIVE.fullmatch(lines[0])):
        name, arguments = directive.groups()
        try:
            orjson.loads(arguments.replace(MESSAGE, ""))
        except orjson.JSONDecodeError:
            raise MockMessagesError(
                f"MAIN_AGENT_MOCK_MESSAGES_FILE: {path}: the arguments of @{name} are not JSON"
            ) from None
        calls.append((name, arguments))
        lines.pop(0)
    return Reply("\n".join(lines).strip(), tuple(calls))


class MockReplies:
    """Thread-safe cycle over the replies (several session actors draw from it)."""

    def __init__(self, replies: tuple[Reply, ...]) -> None:
        self._replies = replies
        self._cycle = itertools.cycle(range(len(replies)))
        self._lock = threading.Lock()

    def next(self) -> tuple[int, Reply]:
        """The next reply and its index."""
        with self._lock:
            index = next(self._cycle)
        return index, self._replies[index]

    def __getitem__(self, index: int) -> Reply:
        return self._replies[index]


def words(text: str) -> Iterator[str]:
    """``text`` in word-sized chunks that concatenate back to exactly ``text``."""
    return (match.group() for match in _WORD.finditer(text))


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
        asked = _user_message(messages)
        if (continued := _continued(messages)) is not None:
            reply = self.replies[continued]
            text = reply.text.replace(RESULTS, _results(messages))
        else:
            index, reply = self.replies.next()
            offered = {spec["function"]["name"] for spec in tools}
            calls = [(name, args) for name, args in reply.calls if name in offered]
            if calls:
                yield Piece(tool_calls=_tool_calls(index, calls, asked), finish_reason="tool_calls")
                return
            text = reply.text.replace(RESULTS, "(no tool was offered)")
        pause = 1 / self.words_per_second if self.words_per_second else 0.0
        for word in words(text.replace(MESSAGE, asked)):
            if pause:
                await asyncio.sleep(pause)
            yield Piece(text=word)
        yield Piece(finish_reason="stop")


def _tool_calls(index: int, calls: list[tuple[str, str]], asked: str) -> tuple[ToolCallDelta, ...]:
    escaped = orjson.dumps(asked).decode()[1:-1]  # a JSON string's inside
    return tuple(
        ToolCallDelta(n, f"mock-{index}-{n}", name, arguments.replace(MESSAGE, escaped))
        for n, (name, arguments) in enumerate(calls)
    )


def _user_message(messages: Sequence[dict[str, Any]]) -> str:
    content = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    return content if isinstance(content, str) else ""


def _continued(messages: Sequence[dict[str, Any]]) -> int | None:
    """The index of the reply whose tool calls just answered, if this step follows them."""
    if not messages or messages[-1]["role"] != "tool":
        return None
    match = _CALL_ID.fullmatch(messages[-1].get("tool_call_id", ""))
    return int(match.group(1)) if match else None


def _results(messages: Sequence[dict[str, Any]]) -> str:
    """The latest tool results as a Markdown list: each hit's text and where it is from."""
    answers = itertools.takewhile(lambda m: m["role"] == "tool", reversed(messages))
    lines = [line for answer in reversed(list(answers)) for line in _hits(answer["content"])]
    return "\n".join(lines) or "- nothing found"


def _hits(content: str) -> list[str]:
    """One line a hit of a tool's JSON answer (``{"passages": [...]}``, ``{"results": ...}``)."""
    try:
        found = orjson.loads(content)
    except orjson.JSONDecodeError:
        return [f"- {content}"]
    if not isinstance(found, dict):
        return [f"- {content}"]
    if "error" in found:
        return [f"- the tool failed: {found['error']}"]
    hits = next((value for value in found.values() if isinstance(value, list)), [])
    lines = []
    for hit in hits:
        what = hit.get("text") or hit.get("title") or hit.get("content") or ""
        where = hit.get("journal_reference") or hit.get("url")
        lines.append(f"- {what}" + (f" ({where})" if where else ""))
    return lines
