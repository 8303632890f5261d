"""The mock model: canned replies, streamed word by word through the real turn path.

Replies come from ``MAIN_AGENT_MOCK_MESSAGES_FILE`` (or the built-in samples):
messages separated by a line ``--- message ---`` with a blank line before and
after. They are used in turn, cycling, so a demo shows every sample.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

SEPARATOR = "\n\n--- message ---\n\n"
_WORD = re.compile(r"\S+\s*|\s+")


class MockMessagesError(ValueError):
    """The mock messages file is missing or holds no message."""


def load_messages(path: Path | None) -> tuple[str, ...]:
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
    messages = tuple(part.strip() for part in text.replace("\r\n", "\n").split(SEPARATOR))
    messages = tuple(message for message in messages if message)
    if not messages:
        raise MockMessagesError(f"MAIN_AGENT_MOCK_MESSAGES_FILE: {path} holds no message")
    return messages


class MockReplies:
    """Thread-safe cycle over the replies (several session actors draw from it)."""

    def __init__(self, messages: tuple[str, ...]) -> None:
        self._cycle = itertools.cycle(messages)
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            return next(self._cycle)


def words(text: str) -> Iterator[str]:
    """``text`` in word-sized chunks that concatenate back to exactly ``text``."""
    return (match.group() for match in _WORD.finditer(text))
