"""Cut uncommitted journal messages into knowledge-update jobs that fit a token budget.

Pure functions. Tokens are estimated on the exact text a job carries — its
payload as the envelope serialises it, framing and JSON escapes included — so
no job exceeds the budget, and rounding happens once per job, not per message.
Messages keep their order and each lands in exactly one job; a message too
large for any job is cut into ordered parts, one job each.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import orjson

from exobrain.jobs import knowledge_message, knowledge_payload

#: Estimates the tokens of a text. Must be monotone: a text never estimates
#: fewer tokens than any prefix of it.
TokenEstimator = Callable[[str], int]


def estimate_tokens(text: str) -> int:
    """The default estimator: characters / 4, rounded up."""
    return -(-len(text) // 4)


@dataclass(frozen=True, slots=True)
class Entry:
    """One uncommitted message, as selected: journal order, then sequence."""

    id: uuid.UUID
    journal_reference: str
    role: str
    content: str
    sequence: int
    #: RFC 3339, UTC.
    created_at: str


@dataclass(frozen=True, slots=True)
class Chunk:
    journal_reference: str
    message_ids: tuple[uuid.UUID, ...]
    #: 0 for whole messages; n >= 1 for the n-th part of one message too large for a job.
    part: int
    #: The payload exactly as it is sent (serialised JSON).
    payload: str
    tokens: int


class BudgetTooSmall(ValueError):
    """Not even one character of a message fits a job's framing within the budget."""


def runs(entries: Sequence[Entry]) -> Iterator[Sequence[Entry]]:
    """Consecutive messages of one journal; a gap in sequence (a committed message) ends a run."""
    start = 0
    for index in range(1, len(entries) + 1):
        if index == len(entries) or not _follows(entries[index - 1], entries[index]):
            yield entries[start:index]
            start = index


def chunk(
    entries: Sequence[Entry],
    *,
    budget: int,
    requested_by: str,
    estimate: TokenEstimator = estimate_tokens,
) -> list[Chunk]:
    """Every entry in order, in jobs of at most ``budget`` estimated tokens, greedily filled."""
    chunks: list[Chunk] = []
    for run in runs(entries):
        frame = _Frame(run[0].journal_reference, requested_by, budget, estimate)
        chunks.extend(frame.cut(run))
    return chunks


def _follows(previous: Entry, entry: Entry) -> bool:
    return (
        entry.journal_reference == previous.journal_reference
        and entry.sequence == previous.sequence + 1
    )


def _fragment(entry: Entry, content: str) -> str:
    message = knowledge_message(entry.role, content, entry.sequence, entry.created_at)
    return orjson.dumps(message).decode()


class _Frame:
    """One journal's payload around its serialised messages, and the budget it must fit."""

    def __init__(
        self, reference: str, requested_by: str, budget: int, estimate: TokenEstimator
    ) -> None:
        empty = orjson.dumps(knowledge_payload(reference, [], requested_by)).decode()
        head, tail = empty.split('"messages":[]', 1)
        self.head, self.tail = f'{head}"messages":[', f"]{tail}"
        self.reference = reference
        self.budget = budget
        self.estimate = estimate

    def render(self, fragments: Sequence[str]) -> str:
        return f"{self.head}{','.join(fragments)}{self.tail}"

    def fits(self, text: str) -> bool:
        return self.estimate(text) <= self.budget

    def cut(self, run: Sequence[Entry]) -> Iterator[Chunk]:
        taken: list[Entry] = []
        fragments: list[str] = []
        text = ""
        for entry in run:
            fragment = _fragment(entry, entry.content)
            candidate = self.render([*fragments, fragment])
            if self.fits(candidate):
                taken.append(entry)
                fragments.append(fragment)
                text = candidate
                continue
            if taken:
                yield self._chunk(taken, 0, text)
            alone = self.render([fragment])
            if self.fits(alone):
                taken, fragments, text = [entry], [fragment], alone
            else:
                taken, fragments = [], []
                yield from self._parts(entry)
        if taken:
            yield self._chunk(taken, 0, text)

    def _parts(self, entry: Entry) -> Iterator[Chunk]:
        """``entry`` cut into the fewest ordered parts that each fit a job of their own."""
        content, start, part = entry.content, 0, 0
        while start < len(content) or part == 0:  # an empty message too large fails too
            end = self._longest_fit(entry, start)
            part += 1
            yield self._chunk([entry], part, self.render([_fragment(entry, content[start:end])]))
            start = end

    def _longest_fit(self, entry: Entry, start: int) -> int:
        """The largest ``end`` such that ``content[start:end]`` fits a job alone (binary search)."""
        content = entry.content
        low, high = start, len(content)
        while low < high:
            middle = (low + high + 1) // 2
            if self.fits(self.render([_fragment(entry, content[start:middle])])):
                low = middle
            else:
                high = middle - 1
        if low == start:
            raise BudgetTooSmall(
                f"a budget of {self.budget} tokens cannot carry any of message {entry.id}"
            )
        return low

    def _chunk(self, entries: Sequence[Entry], part: int, text: str) -> Chunk:
        return Chunk(
            self.reference, tuple(entry.id for entry in entries), part, text, self.estimate(text)
        )
