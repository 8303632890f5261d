"""A turn's event stream: numbered, replayable, followed by any number of readers.

The SessionActor owns the :class:`Stream`; each reader is a
:class:`Subscription` living on the event loop. The actor pushes whole batches
to a subscription with one ``call_soon_threadsafe``, always from its own
thread, so a reader sees a stream's events in order whether they came from
the backlog or live. While a reader is behind, adjacent ``message_chunk``
events waiting for it merge into one (texts joined in order, the later
``seq`` kept), so a slow reader costs frames in proportion to the work, not
to the number of words streamed. A finished stream is kept merged the same
way, with where each chunk ended, so that it weighs about its text.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import operator
import sys
import time
import uuid
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from exobrain.agent.events import Event, EventName, wire
from exobrain.jobs.lifecycle import JobStatus

from .retention import Share


@dataclass(frozen=True, slots=True)
class ActiveStream:
    """Told to a newly attached reader: a turn under way (running or waiting) and how far."""

    stream_id: uuid.UUID
    last_seq: int


@dataclass(frozen=True, slots=True)
class StreamStarted:
    """Told to the user's attached readers when a message is accepted, before its events."""

    stream_id: uuid.UUID
    client_message_id: uuid.UUID
    journal_reference: str
    message: str


@dataclass(frozen=True, slots=True)
class StreamEvent:
    stream_id: uuid.UUID
    seq: int
    name: EventName
    data: Mapping[str, Any]
    #: Set on merged chunks: this event stands for ``first_seq`` through ``seq``.
    first_seq: int | None = None


@dataclass(frozen=True, slots=True)
class TurnOutcome:
    """How a turn ended and its answer's metadata, logged before the answer is stored, so
    that whoever finishes the turn after its owner died stores what the owner meant to."""

    stream_id: uuid.UUID
    reason: str
    error: str | None
    metadata: Mapping[str, Any]


class Sink(Protocol):
    """A reader's inbox as the SessionActor sees it; both calls come from its thread."""

    def push(self, events: Sequence[Item]) -> None: ...

    def end(self) -> None: ...


#: What a kept event weighs besides its data's values: the StreamEvent, its read-only view,
#: its dict, its number, its list slot (tracemalloc, CPython 3.11).
_KEPT_EVENT_BYTES = 280
#: What a stream weighs besides its events and question: the Stream, its lists, set, share.
_KEPT_STREAM_BYTES = 1200


class Stream:
    """A turn's numbered events, kept for readers that come late or resume.

    Once it is finished, each run of adjacent ``message_chunk`` events is kept
    as one event (``first_seq``..``seq``, texts joined) beside the offsets
    where each chunk's text ends, so a reader resuming after any number inside
    the run still gets exactly the text after it. What it weighs goes to its
    ``share`` of the process's :class:`~.retention.StreamBudget`.
    """

    def __init__(
        self, started: StreamStarted, share: Share, events: Sequence[StreamEvent] = ()
    ) -> None:
        self.started = started
        self.stream_id = started.stream_id
        self.reference = started.journal_reference
        self.events: list[StreamEvent] = []
        self.last_seq = 0
        self.subscribers: set[Sink] = set()
        self.finished_at: float | None = None
        #: Of a merged run (by its ``seq``): where the text of each of its chunks ends.
        self._ends: dict[int, array[int]] = {}
        self._share = share
        self._nbytes = _KEPT_STREAM_BYTES + sys.getsizeof(started.message)
        self._keep(events)

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def nbytes(self) -> int:
        """About what the stream holds in memory."""
        return self._nbytes

    def append(self, events: Iterable[Event]) -> tuple[StreamEvent, ...]:
        """Number ``events``, push them to the readers; returns them as numbered."""
        numbered = enumerate(map(wire, events), self.last_seq + 1)
        batch = tuple(
            StreamEvent(self.stream_id, seq, name, MappingProxyType(data))
            for seq, (name, data) in numbered
        )
        self._keep(batch)
        for subscriber in self.subscribers:
            subscriber.push(batch)
        if self.finished:
            self.subscribers.clear()
        return batch

    def after(self, seq: int) -> list[Item]:
        """The events after ``seq``, adjacent chunks merged: a late reader is behind anyway."""
        rest = self.events[bisect.bisect_right(self.events, seq, key=_last_seq) :]
        if rest and (first := rest[0].first_seq) is not None and first <= seq:
            rest[0] = self._cut(rest[0], first, seq)
        return coalesce(rest)

    def release(self) -> None:
        """The stream leaves memory: its bytes leave the budget."""
        self._share.release()

    def _keep(self, events: Sequence[StreamEvent]) -> None:
        if not events:
            return
        self.events += events
        self.last_seq = events[-1].seq
        self._nbytes += _weight(events)
        if events[-1].name == "done":  # exactly once, last
            self.finished_at = time.monotonic()
            self._compact()
        self._share.resize(self._nbytes, finished=self.finished)

    def _compact(self) -> None:
        """Each run of adjacent chunks as one event; where their texts end, in ``_ends``."""
        kept: list[StreamEvent] = []
        for chunks, group in itertools.groupby(self.events, key=_is_chunk):
            run = list(group)
            if not chunks or len(run) == 1:
                kept += run
                continue
            texts = [chunk.data["text"] for chunk in run]
            self._ends[run[-1].seq] = array("I", itertools.accumulate(map(len, texts)))
            text = MappingProxyType({"text": "".join(texts)})
            kept.append(StreamEvent(self.stream_id, run[-1].seq, "message_chunk", text, run[0].seq))
        self.events = kept
        ends = sum(map(sys.getsizeof, self._ends.values()))
        question = sys.getsizeof(self.started.message)
        self._nbytes = _KEPT_STREAM_BYTES + question + _weight(kept) + ends

    def _cut(self, run: StreamEvent, first: int, seq: int) -> StreamEvent:
        """What of the merged ``run`` (``first``..``run.seq``) follows chunk ``seq``."""
        text = run.data["text"][self._ends[run.seq][seq - first] :]
        after = seq + 1 if seq + 1 < run.seq else None
        return StreamEvent(self.stream_id, run.seq, "message_chunk", {"text": text}, after)


_last_seq = operator.attrgetter("seq")


def _is_chunk(event: StreamEvent) -> bool:
    return event.name == "message_chunk"


def _weight(events: Sequence[StreamEvent]) -> int:
    values = sum(sys.getsizeof(value) for event in events for value in event.data.values())
    return _KEPT_EVENT_BYTES * len(events) + values


#: What a reader's inbox holds: events, the announcements of an attached reader, and the
#: statuses of its user's jobs (which a socket's inbox gets from the instance's job feed).
Item = StreamEvent | ActiveStream | StreamStarted | JobStatus


def coalesce(events: Sequence[Item]) -> list[Item]:
    """``events`` with each run of one stream's adjacent ``message_chunk`` events merged.

    Texts are joined once per run, so merging n chunks costs O(n), not O(n²).
    """
    merged: list[Item] = []
    for stream_id, run in itertools.groupby(events, key=_chunk_of):
        if stream_id is None:
            merged.extend(run)
            continue
        chunks = [chunk for chunk in run if isinstance(chunk, StreamEvent)]
        if len(chunks) == 1:
            merged.append(chunks[0])
        else:
            text = "".join(chunk.data["text"] for chunk in chunks)
            first = chunks[0].first_seq or chunks[0].seq
            merged.append(
                StreamEvent(stream_id, chunks[-1].seq, "message_chunk", {"text": text}, first)
            )
    return merged


def _chunk_of(item: Item) -> uuid.UUID | None:
    if isinstance(item, StreamEvent) and item.name == "message_chunk":
        return item.stream_id
    return None


#: What an event costs a reader's inbox besides its text (the objects holding it).
_EVENT_BYTES = 200


class SubscriberTooSlow(RuntimeError):
    """More events waited for this reader than its limit: it is dropped, the turn goes on."""


class SessionEnded(RuntimeError):
    """The reader was let go: the server is stopping, the session manager restarted, or its
    connection is being closed; nothing more will be pushed to it."""


class Subscription:
    """One reader's inbox on the loop; :meth:`push` and :meth:`end` may be called from any thread.

    ``max_bytes`` bounds what waits for the reader (texts plus a fixed cost per
    event once merged, about what the events occupy); past it the reader is
    marked too slow and :meth:`next` raises :class:`SubscriberTooSlow`.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_bytes: int | None = None) -> None:
        self._loop = loop
        self._max_bytes = max_bytes
        self._pending: list[Item] = []
        self._pending_bytes = 0
        self._ready = asyncio.Event()
        self._overflowed = False
        self._ended = False

    def push(self, events: Sequence[Item]) -> None:
        if events and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._accept, events)

    def end(self) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._end)

    def _accept(self, events: Sequence[Item]) -> None:
        if self._overflowed:
            return
        merged = coalesce(events)
        self._pending += merged
        self._pending_bytes += sum(_EVENT_BYTES + _text_bytes(item) for item in merged)
        if self._max_bytes is not None and self._pending_bytes > self._max_bytes:
            self._overflowed = True
            self._pending.clear()
        self._ready.set()

    def _end(self) -> None:
        self._ended = True
        self._ready.set()

    async def next(self, timeout: float) -> list[Item]:
        """Everything waiting, or ``[]`` after ``timeout`` seconds of silence."""
        if not self._pending and not self._overflowed and not self._ended:
            try:
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
            except TimeoutError:
                return []
        self._ready.clear()
        if self._overflowed:
            raise SubscriberTooSlow
        if self._ended and not self._pending:
            raise SessionEnded
        events, self._pending, self._pending_bytes = coalesce(self._pending), [], 0
        return events


def _text_bytes(item: Item) -> int:
    return len(item.data.get("text", "")) if isinstance(item, StreamEvent) else 0
