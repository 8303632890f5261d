"""The mock model's message file: separators, cycling, and clear start-up errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from exobrain.agent.mock import MockMessagesError, MockReplies, load_messages, words


def test_messages_are_split_on_the_separator_line(tmp_path: Path) -> None:
    path = tmp_path / "replies.md"
    path.write_text("First *reply*.\n\n--- message ---\n\nSecond\n\nwith a paragraph.\n")
    assert load_messages(path) == ("First *reply*.", "Second\n\nwith a paragraph.")


def test_replies_cycle_in_order(tmp_path: Path) -> None:
    path = tmp_path / "replies.md"
    path.write_text("one\n\n--- message ---\n\ntwo\n")
    replies = MockReplies(load_messages(path))
    assert [replies.next() for _ in range(5)] == ["one", "two", "one", "two", "one"]


def test_built_in_samples_cover_the_rich_markdown() -> None:
    samples = "\n".join(load_messages(None))
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
