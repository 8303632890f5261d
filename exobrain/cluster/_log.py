"""Chat events as a durable, replayable log on JetStream (DESIGN.md §10).

Each turn's stream is a subject ``<prefix>.log.<user>.<stream>`` of one
JetStream stream (``CHAT_LOG_STREAM_NAME``, kept for
``CHAT_STREAM_RETENTION_SECONDS`` and at most ``CHAT_LOG_MAX_BYTES``). A log
message carries, in order, what the owner produced for that stream since its
last message: the ``started`` announcement (the question), numbered events,
and the turn's ``outcome`` (its reason and metadata, written before the answer
is stored, so whoever finishes an orphaned turn stores what the owner meant
to). The writer keeps at most one message per stream in flight and packs
whatever queued for ``LINGER`` and meanwhile into the next one: a quick turn
costs one acknowledged publish, a streamed answer one per period, not one per
word. A message that is not acknowledged is sent again unchanged, with the
same ``Nats-Msg-Id``.

Readers on any instance replay a subject with an ordered consumer and follow
it live; they skip what they already have by sequence number, so a message
that JetStream stored twice is harmless. Sequence numbers are the owner's,
the same as its local readers see.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js import api

from exobrain.actors.session import (
    Item,
    Orphan,
    StreamEvent,
    StreamStarted,
    TurnOutcome,
    coalesce,
)

log = logging.getLogger(__name__)

#: Who wrote a log message: an instance id, or ``takeover`` (an orphan's ending, for all).
OWNER_HEADER = "Exo-Owner"
TAKEOVER = "takeover"

#: What the log holds besides reader items: the turn's outcome.
Entry = Item | TurnOutcome

_ACK_TIMEOUT = 5.0
_RETRY_MAX = 2.0

#: How long a stream's entries gather before they are written: a quick turn's question,
#: answer and end travel in one message, a streamed answer in one message per period,
#: and the writes stay off the path of the turn's own readers. Readers elsewhere lag
#: by at most this.
LINGER = 0.01


@dataclass(frozen=True, slots=True)
class Logged:
    """One log message, decoded: who wrote it and its entries for one stream."""

    stream_id: uuid.UUID
    owner: str
    entries: tuple[Entry, ...]
    #: Its place in the JetStream stream (0 when delivered live).
    position: int = 0


@dataclass(slots=True)
class _Queue:
    """What waits to be written for one stream, and who waits for it to be durable."""

    user_id: uuid.UUID
    owner: str
    entries: list[Entry] = field(default_factory=list)
    enqueued: int = 0
    acked: int = 0
    waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    busy: bool = False


class ChatLog:
    """The chat log of a cluster; also the sessions' ``EventLog`` (exobrain.actors.session)."""

    def __init__(
        self,
        client: NatsClient,
        *,
        subject_prefix: str,
        stream_name: str,
        retention: float,
        max_bytes: int,
        instance_id: str,
    ) -> None:
        self._nats = client
        self._js = client.jetstream(timeout=_ACK_TIMEOUT)
        self._prefix = f"{subject_prefix}.log"
        self.stream_name = stream_name
        self._retention, self._max_bytes = retention, max_bytes
        self.instance_id = instance_id
        self._loop = asyncio.get_running_loop()
        self._queues: dict[uuid.UUID, _Queue] = {}
        self._ids = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()
        #: Seconds from a message's publish to its acknowledgement (for metrics).
        self.on_published: Callable[[float], None] = lambda seconds: None

    async def ensure(self) -> None:
        """Create the stream, or bring an existing one to the configured limits."""
        config = api.StreamConfig(
            name=self.stream_name,
            subjects=[f"{self._prefix}.>"],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            max_age=self._retention,
            max_bytes=self._max_bytes,
            duplicate_window=min(self._retention, 120.0),
            discard=api.DiscardPolicy.OLD,
        )
        try:
            await self._js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await self._js.update_stream(config)

    def subject(self, user_id: uuid.UUID, stream_id: uuid.UUID | str = "*") -> str:
        return f"{self._prefix}.{user_id}.{stream_id}"

    # -- writing (the owner) --------------------------------------------------------

    def append(
        self, user_id: uuid.UUID, stream_id: uuid.UUID, entries: Iterable[Entry], *, owner: str = ""
    ) -> None:
        """Queue ``entries`` of one stream; on the loop. They are written in order."""
        queue = self._queues.get(stream_id)
        if queue is None:
            queue = self._queues[stream_id] = _Queue(user_id, owner or self.instance_id)
        added = list(entries)
        queue.entries += added
        queue.enqueued += len(added)
        if not queue.busy and queue.entries:
            queue.busy = True
            task = asyncio.get_running_loop().create_task(self._drain(stream_id, queue))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def durable(self, stream_id: uuid.UUID) -> None:
        """Return once everything queued for the stream so far is in the log."""
        queue = self._queues.get(stream_id)
        if queue is None or queue.acked >= queue.enqueued:
            return
        waiter = asyncio.get_running_loop().create_future()
        queue.waiters.append((queue.enqueued, waiter))
        await waiter

    async def _drain(self, stream_id: uuid.UUID, queue: _Queue) -> None:
        subject = self.subject(queue.user_id, stream_id)
        headers_base = {OWNER_HEADER: queue.owner}
        delay = 0.05
        while queue.entries:
            await asyncio.sleep(LINGER)
            entries, queue.entries = queue.entries, []
            payload = orjson.dumps([_encode(entry) for entry in entries])
            headers = {
                **headers_base,
                "Nats-Msg-Id": f"{stream_id}:{queue.owner}:{next(self._ids)}",
            }
            while True:
                started = time.perf_counter()
                try:
                    ack = await self._js.publish_async(subject, payload, headers=headers)
                    await asyncio.wait_for(ack, _ACK_TIMEOUT)
                    break
                except (nats.errors.Error, TimeoutError) as exc:
                    log.warning("chat log write for stream %s failed, retrying: %r", stream_id, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RETRY_MAX)
            self.on_published(time.perf_counter() - started)
            delay = 0.05
            queue.acked += len(entries)
            still = []
            for upto, waiter in queue.waiters:
                if queue.acked >= upto:
                    if not waiter.done():
                        waiter.set_result(None)
                else:
                    still.append((upto, waiter))
            queue.waiters = still
        queue.busy = False
        if self._queues.get(stream_id) is queue:
            del self._queues[stream_id]

    async def close(self) -> None:
        """Let queued writes finish (bounded), then stop."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=_ACK_TIMEOUT)
        for task in list(self._tasks):
            task.cancel()

    # -- reading (anyone) -----------------------------------------------------------

    async def last(self, user_id: uuid.UUID, stream_id: uuid.UUID) -> Logged | None:
        """The stream's newest log message, or None if the log does not have the stream."""
        try:
            raw = await self._js.get_last_msg(self.stream_name, self.subject(user_id, stream_id))
        except nats.js.errors.NotFoundError:
            return None
        owner = (raw.headers or {}).get(OWNER_HEADER, "")
        return decode(stream_id, owner, raw.data or b"", position=raw.seq or 0)

    async def streams(self, user_id: uuid.UUID) -> list[uuid.UUID]:
        """The user's streams still in the log."""
        info = await self._js.stream_info(self.stream_name, subjects_filter=self.subject(user_id))
        subjects = info.state.subjects or {}
        return [uuid.UUID(subject.rsplit(".", 1)[1]) for subject in subjects]

    async def unfinished(self, user_id: uuid.UUID) -> list[Logged]:
        """The newest log message of each of the user's streams that has not ended."""
        found = []
        for stream_id in await self.streams(user_id):
            last = await self.last(user_id, stream_id)
            if last is not None and not finished(last.entries):
                found.append(last)
        return found

    async def orphans(self, user_id: uuid.UUID) -> list[Orphan]:
        """The user's unfinished turns, those begun first, then in the order they came."""
        unfinished = sorted(
            await self.unfinished(user_id), key=lambda last: (not _begun(last), last.position)
        )
        orphans = []
        for last in unfinished:
            entries = await self.history(user_id, last.stream_id)
            started = [entry for entry in entries if isinstance(entry, StreamStarted)]
            if not started:  # its beginning aged out of the log: nothing to rebuild it from
                continue
            outcomes = [entry for entry in entries if isinstance(entry, TurnOutcome)]
            events = tuple(entry for entry in entries if isinstance(entry, StreamEvent))
            orphans.append(Orphan(started[0], events, outcomes[-1] if outcomes else None))
        return orphans

    def write(self, user_id: uuid.UUID, stream_id: uuid.UUID, entries: Sequence[Entry]) -> None:
        """:meth:`append` from any thread (the session actors')."""
        if entries and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.append, user_id, stream_id, entries)

    async def reader(self, user_id: uuid.UUID, stream_id: uuid.UUID, after_seq: int) -> LogReader:
        """Follow the stream from its start: replayed, then live (an ordered consumer)."""
        reader = LogReader(stream_id, after_seq)
        reader.subscription = await self._js.subscribe(
            self.subject(user_id, stream_id),
            stream=self.stream_name,
            ordered_consumer=True,
            deliver_policy=api.DeliverPolicy.ALL,
            cb=reader.deliver,
        )
        return reader

    async def history(self, user_id: uuid.UUID, stream_id: uuid.UUID) -> list[Entry]:
        """Everything the log holds of the stream, in order, repeated events dropped."""
        entries: list[Entry] = []
        seen = 0
        done = asyncio.get_running_loop().create_future()

        async def deliver(msg: Msg) -> None:
            nonlocal seen
            for entry in decode(stream_id, "", msg.data).entries:
                if isinstance(entry, StreamEvent):
                    if entry.seq <= seen:
                        continue
                    seen = entry.seq
                entries.append(entry)
            if msg.metadata.num_pending == 0 and not done.done():
                done.set_result(None)

        subscription = await self._js.subscribe(
            self.subject(user_id, stream_id),
            stream=self.stream_name,
            ordered_consumer=True,
            deliver_policy=api.DeliverPolicy.ALL,
            cb=deliver,
        )
        try:
            await asyncio.wait_for(done, _ACK_TIMEOUT)
        finally:
            await subscription.unsubscribe()
        return entries

    async def watch(
        self, user_id: uuid.UUID, on_message: Callable[[Logged], Awaitable[None]]
    ) -> NatsSubscription:
        """Live log messages of every stream of the user written by other instances, as they
        are written (core NATS); this instance's own are not even decoded."""

        async def deliver(msg: Msg) -> None:
            owner = (msg.headers or {}).get(OWNER_HEADER, "")
            if owner != self.instance_id:
                stream_id = uuid.UUID(msg.subject.rsplit(".", 1)[1])
                await on_message(decode(stream_id, owner, msg.data))

        return await self._nats.subscribe(self.subject(user_id), cb=deliver)


class LogReader:
    """One reader's view of one stream from the log: events after ``after_seq``, in order."""

    def __init__(self, stream_id: uuid.UUID, after_seq: int) -> None:
        self.stream_id = stream_id
        self.last_seq = after_seq
        self.finished = False
        self.subscription: NatsSubscription | None = None
        self._pending: deque[Item] = deque()
        self._ready = asyncio.Event()

    async def deliver(self, msg: Msg) -> None:
        for entry in decode(self.stream_id, "", msg.data).entries:
            if isinstance(entry, StreamEvent) and entry.seq > self.last_seq:
                self.last_seq = entry.seq
                self.finished = self.finished or entry.name == "done"
                self._pending.append(entry)
        if self._pending:
            self._ready.set()

    async def next(self, timeout: float) -> list[Item]:
        """What arrived since the last call, or ``[]`` after ``timeout`` seconds of silence."""
        if not self._pending:
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return []
        entries = coalesce(self._pending)  # as the owner's own readers get them when behind
        self._pending.clear()
        self._ready.clear()
        return entries

    async def close(self) -> None:
        if self.subscription is not None:
            try:
                await self.subscription.unsubscribe()
            except nats.errors.Error as exc:  # connection gone: the consumer times out alone
                log.debug("chat log reader of %s: %r", self.stream_id, exc)


def _begun(last: Logged) -> bool:
    return any(not isinstance(entry, StreamStarted) for entry in last.entries)


def finished(entries: Sequence[Entry]) -> bool:
    return any(isinstance(entry, StreamEvent) and entry.name == "done" for entry in entries)


def last_seq(entries: Sequence[Entry]) -> int:
    return max((entry.seq for entry in entries if isinstance(entry, StreamEvent)), default=0)


def _encode(entry: Entry) -> list[Any]:
    """An entry as a JSON array; a chunk, ~150 of them an answer, as ``["c", seq, text]``."""
    if isinstance(entry, StreamEvent):
        if entry.name == "message_chunk":
            return ["c", entry.seq, entry.data["text"]]
        return ["e", entry.seq, entry.name, dict(entry.data)]
    match entry:
        case StreamStarted(client_message_id=cid, journal_reference=reference, message=text):
            return ["s", str(cid), reference, text]
        case TurnOutcome(reason=reason, error=error, metadata=metadata):
            return ["o", reason, error, dict(metadata)]
    raise TypeError(f"not a log entry: {entry!r}")


def decode(stream_id: uuid.UUID, owner: str, payload: bytes, *, position: int = 0) -> Logged:
    entries: list[Entry] = []
    for raw in orjson.loads(payload):
        match raw:
            case ["c", seq, text]:
                chunk = MappingProxyType({"text": text})
                entries.append(StreamEvent(stream_id, seq, "message_chunk", chunk))
            case ["e", seq, name, data]:
                entries.append(StreamEvent(stream_id, seq, name, MappingProxyType(data)))
            case ["s", cid, reference, text]:
                entries.append(StreamStarted(stream_id, uuid.UUID(cid), reference, text))
            case ["o", reason, error, metadata]:
                entries.append(TurnOutcome(stream_id, reason, error, MappingProxyType(metadata)))
    return Logged(stream_id, owner, tuple(entries), position)
