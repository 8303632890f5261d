"""A turn's event stream: numbered, replayable, followed by any number of readers.

The SessionActor owns the :class:`Stream`; each reader is a
:class:`Subscription` living on the event loop. The actor pushes whole batches
to a subscription with one ``call_soon_threadsafe``; while a reader is behind,
adjacent ``message_chunk`` events waiting for it merge into one (texts joined
in order, the later ``seq`` kept), so a slow reader costs frames in proportion
to the work, not to the number of words streamed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping, MutableSequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from exobrain.agent.events import Event, EventName, wire


@dataclass(frozen=True, slots=True)
class StreamEvent:
    seq: int
    name: EventName
    data: Mapping[str, Any]


class Stream:
    def __init__(self, stream_id: uuid.UUID, client_message_id: uuid.UUID, reference: str) -> None:
        self.stream_id = stream_id
        self.client_message_id = client_message_id
        self.reference = reference
        self.events: list[StreamEvent] = []
        self.subscribers: set[Subscription] = set()
        self.finished_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def append(self, events: Iterable[Event]) -> tuple[StreamEvent, ...]:
        added = []
        for event in events:
            name, data = wire(event)
            added.append(StreamEvent(len(self.events) + 1, name, MappingProxyType(data)))
            self.events.append(added[-1])
            if name == "done":
                self.finished_at = time.monotonic()
        batch = tuple(added)
        for subscriber in self.subscribers:
            subscriber.push(batch)
        return batch

    def after(self, seq: int) -> list[StreamEvent]:
        """The events after ``seq``, adjacent chunks merged: a late reader is behind anyway."""
        merged: list[StreamEvent] = []
        coalesce(merged, self.events[max(0, seq) :])
        return merged


def coalesce(into: MutableSequence[StreamEvent], events: Iterable[StreamEvent]) -> None:
    """Append ``events`` to ``into``, merging each ``message_chunk`` into a chunk before it."""
    for event in events:
        last = into[-1] if into else None
        if last is not None and last.name == event.name == "message_chunk":
            text = last.data["text"] + event.data["text"]
            into[-1] = StreamEvent(event.seq, "message_chunk", {"text": text})
        else:
            into.append(event)


class Subscription:
    """One reader's inbox on the loop; :meth:`push` may be called from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: deque[StreamEvent] = deque()
        self._ready = asyncio.Event()

    def push(self, events: tuple[StreamEvent, ...]) -> None:
        if events and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._accept, events)

    def _accept(self, events: tuple[StreamEvent, ...]) -> None:
        coalesce(self._pending, events)
        self._ready.set()

    async def next(self, timeout: float) -> list[StreamEvent]:
        """Everything waiting, or ``[]`` after ``timeout`` seconds of silence."""
        if not self._pending:
            try:
                async with asyncio.timeout(timeout):
                    await self._ready.wait()
            except TimeoutError:
                return []
        self._ready.clear()
        events = list(self._pending)
        self._pending.clear()
        return events
