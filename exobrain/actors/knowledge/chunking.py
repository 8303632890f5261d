"""Cut uncommitted journal messages into knowledge-update jobs that fit a token budget.

Pure functions. Tokens are estimated on the exact text a job carries — its
payload as the envelope serialises it, framing and JSON escapes included — so
no job exceeds the budget, and rounding happens once per job, not per message.
Messages keep their order and each lands in exactly one job; a message too
large for any job is cut into ordered parts, one job each.
"""

from __future__ import annotations

import bisect
import itertools
import math
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from exobrain.jobs import knowledge_message, knowledge_payload

#: Estimates the tokens of a text. Must be monotone: more text never estimates
#: fewer tokens (the chunker searches for how much fits a job).
TokenEstimator = Callable[[str], int]


#: The default estimator's characters per token.
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """The default estimator: characters / 4, rounded up."""
    return -(-len(text) // CHARS_PER_TOKEN)


class Entry(NamedTuple):
    """One uncommitted message, as selected: journal order, then sequence.

    A tuple, not a dataclass: an update selects ~10,000 of them, and a tuple is
    made several times faster.
    """

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
    #: The same payload unserialised, as the job request is built from it.
    fields: dict[str, Any]
    tokens: int


class BudgetTooSmall(ValueError):
    """Not even one character of a message fits a job's framing within the budget."""


def runs(entries: Sequence[Entry]) -> Iterator[Sequence[Entry]]:
    """Consecutive messages of one journal; a gap in sequence (a committed message) ends a run."""
    start = 0
    for index, (previous, entry) in enumerate(itertools.pairwise(entries), 1):
        if (
            entry.journal_reference != previous.journal_reference
            or entry.sequence != previous.sequence + 1
        ):
            yield entries[start:index]
            start = index
    if entries:
        yield entries[start:]


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


def _message(entry: Entry, content: str) -> dict[str, Any]:
    return knowledge_message(entry.role, content, entry.sequence, entry.created_at)


def _fragment(message: dict[str, Any]) -> str:
    """A message as the payload text carries it."""
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
        self.requested_by = requested_by
        self.budget = budget
        self.estimate = estimate
        #: Estimated tokens per character of the last text estimated: predicts the next cut.
        self.density = estimate(empty) / len(empty)

    def render(self, fragments: Sequence[str]) -> str:
        return f"{self.head}{','.join(fragments)}{self.tail}"

    def fits(self, text: str) -> bool:
        """Whether ``text`` fits the budget; its tokens per character predict the next cut."""
        tokens = self.estimate(text)
        self.density = tokens / len(text)
        return tokens <= self.budget

    def cut(self, run: Sequence[Entry]) -> Iterator[Chunk]:
        messages = [knowledge_message(e.role, e.content, e.sequence, e.created_at) for e in run]
        dumps = orjson.dumps
        fragments = [dumps(message).decode() for message in messages]
        # offsets[i]: the characters of fragments 0:i, a comma after each.
        offsets = [0, *itertools.accumulate(len(fragment) + 1 for fragment in fragments)]
        start = 0
        while start < len(run):
            end = self._fill(fragments, offsets, start)
            if end == start:
                yield from self._parts(run[start])
                end += 1
            else:
                text = self.render(fragments[start:end])
                yield self._chunk(run[start:end], messages[start:end], 0, text)
            start = end

    def _fill(self, fragments: Sequence[str], offsets: Sequence[int], start: int) -> int:
        """The largest ``end`` such that fragments ``start:end`` fit one job (``start``: none).

        Greedy filling, as if message after message were added while the job
        still fits, without estimating a growing text per message: the end is
        predicted from the fragments' lengths and the last text's tokens per
        character, then the estimator, the only judge, confirms it (usually two
        estimates per job) or the search gallops away from it and bisects.
        """

        def fits(end: int) -> bool:
            return self.fits(self.render(fragments[start:end]))

        last = len(fragments)
        framing = len(self.head) + len(self.tail) - 1
        reach = self.budget / self.density if self.density else math.inf
        predicted = bisect.bisect_right(offsets, offsets[start] + reach - framing) - 1
        guess = min(max(predicted, start + 1), last)
        step = 1
        if fits(guess):
            low = guess
            while low + step <= last and fits(low + step):
                low, step = low + step, step * 2
            high = min(low + step, last + 1)
        else:
            high = guess
            while high - step > start and not fits(high - step):
                high, step = high - step, step * 2
            low = max(high - step, start)
        while low + 1 < high:  # fragments start:low fit, start:high do not
            middle = (low + high) // 2
            if fits(middle):
                low = middle
            else:
                high = middle
        return low

    def _parts(self, entry: Entry) -> Iterator[Chunk]:
        """``entry`` cut into the fewest ordered parts that each fit a job of their own."""
        content, start, part = entry.content, 0, 0
        while start < len(content) or part == 0:  # an empty message too large fails too
            end = self._longest_fit(entry, start)
            part += 1
            message = _message(entry, content[start:end])
            text = self.render([_fragment(message)])
            yield self._chunk([entry], [message], part, text)
            start = end

    def _longest_fit(self, entry: Entry, start: int) -> int:
        """The largest ``end`` such that ``content[start:end]`` fits a job alone (binary search)."""
        content = entry.content
        low, high = start, len(content)
        while low < high:
            middle = (low + high + 1) // 2
            message = _message(entry, content[start:middle])
            if self.fits(self.render([_fragment(message)])):
                low = middle
            else:
                high = middle - 1
        if low == start:
            raise BudgetTooSmall(
                f"a budget of {self.budget} tokens cannot carry any of message {entry.id}"
            )
        return low

    def _chunk(
        self,
        entries: Sequence[Entry],
        messages: list[dict[str, Any]],
        part: int,
        text: str,
    ) -> Chunk:
        return Chunk(
            self.reference,
            tuple(entry.id for entry in entries),
            part,
            text,
            knowledge_payload(self.reference, messages, self.requested_by),
            self.estimate(text),
        )
