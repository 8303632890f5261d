"""The chunker's promises, for any messages and budget: property tests with hypothesis."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exobrain.actors.knowledge import Chunk, Entry, TokenEstimator, chunk, estimate_tokens
from exobrain.actors.knowledge.chunking import BudgetTooSmall
from exobrain.jobs import knowledge_message, knowledge_payload

REQUESTER = str(uuid.UUID(int=7))
#: Enough for the framing of a one-message job; below it nothing could be sent.
SMALLEST_BUDGET = 60

characters = st.characters(codec="utf-8") | st.sampled_from('"\\\n\t')
texts = st.text(characters, max_size=600)


@st.composite
def journals(draw: st.DrawFn) -> list[Entry]:
    """Uncommitted messages of a few journals in selection order, with gaps (committed ones)."""
    entries = []
    for day in sorted(draw(st.sets(st.integers(1, 28), min_size=1, max_size=3))):
        sequence = 0
        for content in draw(st.lists(texts, min_size=1, max_size=12)):
            sequence += draw(st.sampled_from((1, 1, 1, 2)))
            role = draw(st.sampled_from(("user", "assistant", "tool", "system")))
            entries.append(
                Entry(
                    uuid.uuid4(),
                    f"2026/11/{day:02d}",
                    role,
                    content,
                    sequence,
                    "2026-11-24T09:30:00.123456Z",
                )
            )
    return entries


def messages_of(piece: Chunk) -> list[dict[str, object]]:
    payload = orjson.loads(piece.payload)
    assert isinstance(payload["messages"], list)
    return payload["messages"]


def reassembled(chunks: Sequence[Chunk]) -> list[tuple[uuid.UUID, str]]:
    """(id, content) per message across all chunks, parts joined back."""
    found: list[tuple[uuid.UUID, str]] = []
    for piece in chunks:
        contents = [str(m["content"]) for m in messages_of(piece)]
        if piece.part > 1:
            assert found[-1][0] == piece.message_ids[0]
            found[-1] = (found[-1][0], found[-1][1] + contents[0])
        else:
            found.extend(zip(piece.message_ids, contents, strict=True))
    return found


@settings(max_examples=300, deadline=None)
@given(entries=journals(), budget=st.integers(SMALLEST_BUDGET, 700))
def test_every_message_once_in_order_and_no_job_over_budget(
    entries: list[Entry], budget: int
) -> None:
    chunks = chunk(entries, budget=budget, requested_by=REQUESTER)
    for piece in chunks:
        assert piece.tokens == estimate_tokens(piece.payload) <= budget
        ids = {entry.id: entry for entry in entries}
        first = ids[piece.message_ids[0]]
        expected = knowledge_payload(
            first.journal_reference,
            [
                knowledge_message(m["role"], m["content"], m["sequence"], m["created_at"])  # type: ignore[arg-type]
                for m in messages_of(piece)
            ],
            REQUESTER,
        )
        assert piece.payload == orjson.dumps(expected).decode()  # the text estimated is sent
        assert piece.fields == expected
        assert {ids[i].journal_reference for i in piece.message_ids} == {piece.journal_reference}
    assert reassembled(chunks) == [(entry.id, entry.content) for entry in entries]


def by_words(text: str) -> int:
    return len(text.split())


@pytest.mark.parametrize("estimate", [estimate_tokens, by_words])
@settings(max_examples=200, deadline=None)
@given(entries=journals(), budget=st.integers(SMALLEST_BUDGET, 700))
def test_chunks_stay_within_one_run_and_are_filled_greedily(
    entries: list[Entry], budget: int, estimate: TokenEstimator
) -> None:
    """However far the chunker's prediction of where a job ends is off."""
    chunks = chunk(entries, budget=budget, requested_by=REQUESTER, estimate=estimate)
    position = {entry.id: index for index, entry in enumerate(entries)}
    for piece, following in itertools.pairwise(chunks):
        indexes = [position[i] for i in piece.message_ids]
        for a, b in itertools.pairwise(indexes):
            assert entries[b].sequence == entries[a].sequence + 1  # no gap inside a chunk
        nxt = entries[position[following.message_ids[0]]]
        last = entries[indexes[-1]]
        same_run = (
            nxt.journal_reference == last.journal_reference and nxt.sequence == last.sequence + 1
        )
        if piece.part == 0 and following.part == 0 and same_run:  # it did not fit
            grown = chunk(
                [*(entries[i] for i in indexes), nxt],
                budget=budget,
                requested_by=REQUESTER,
                estimate=estimate,
            )
            assert len(grown) > 1


@settings(max_examples=100, deadline=None)
@given(  # at most 120 tokens: under 500 characters
    content=st.text(characters, min_size=500, max_size=1500),
    budget=st.integers(SMALLEST_BUDGET, 120),
)
def test_a_message_larger_than_the_budget_is_split_into_ordered_parts(
    content: str, budget: int
) -> None:
    entry = Entry(uuid.uuid4(), "2026/11/24", "user", content, 1, "2026-11-24T09:30:00.000000Z")
    chunks = chunk([entry], budget=budget, requested_by=REQUESTER)
    assert len(chunks) >= 2
    assert [piece.part for piece in chunks] == list(range(1, len(chunks) + 1))
    assert all(piece.message_ids == (entry.id,) and piece.tokens <= budget for piece in chunks)
    assert "".join(str(messages_of(p)[0]["content"]) for p in chunks) == content


def test_tokens_are_estimated_once_per_job_not_per_message() -> None:
    entries = [
        Entry(uuid.uuid4(), "2026/11/24", "user", "x" * 5, n, "2026-11-24T09:30:00Z")
        for n in range(1, 4)
    ]
    [piece] = chunk(entries, budget=8000, requested_by=REQUESTER)
    assert piece.tokens == -(-len(piece.payload) // 4)


def test_the_estimator_is_replaceable() -> None:
    entries = [
        Entry(uuid.uuid4(), "2026/11/24", "user", "word " * 20, n, "2026-11-24T09:30:00Z")
        for n in range(1, 7)
    ]
    chunks = chunk(entries, budget=50, requested_by=REQUESTER, estimate=by_words)
    assert [len(piece.message_ids) for piece in chunks] == [2, 2, 2]
    assert all(len(piece.payload.split()) <= 50 for piece in chunks)


def test_a_budget_too_small_for_any_framing_is_refused() -> None:
    entry = Entry(uuid.uuid4(), "2026/11/24", "user", "hello", 1, "2026-11-24T09:30:00Z")
    with pytest.raises(BudgetTooSmall):
        chunk([entry], budget=16, requested_by=REQUESTER)
