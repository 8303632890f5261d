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

No message exceeds the connection's ``max_payload`` (the server's, 1 MB by
default, headers included): entries that do not fit together go in several
messages, in order, and an entry too big for a message of its own (a huge
chunk, question or tool result) is cut into numbered fragments of its
encoding, which readers join back before they decode it.

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
    #: The stream's highest event number as of this message (fragments count too).
    last_seq: int = 0
    #: Whether the turn had begun running: anything besides its question is here.
    begun: bool = False


@dataclass(frozen=True, slots=True)
class _Piece:
    """An encoded entry, or a fragment of one (``whole``: the entry it is cut from)."""

    data: bytes
    #: Entries this piece completes: 1 for an entry or its last fragment, else 0.
    completes: int = 1
    whole: bytes | None = None


@dataclass(slots=True)
class _Queue:
    """What waits to be written for one stream, and who waits for it to be durable."""

    user_id: uuid.UUID
    owner: str
    pieces: deque[_Piece] = field(default_factory=deque)
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
        added = [_Piece(orjson.dumps(_encode(entry))) for entry in entries]
        queue.pieces += added
        queue.enqueued += len(added)
        if not queue.busy and queue.pieces:
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
        while queue.pieces:
            await asyncio.sleep(LINGER)
            headers = {
                OWNER_HEADER: queue.owner,
                "Nats-Msg-Id": f"{stream_id}:{queue.owner}:{next(self._ids)}",
            }
            taken = _take(queue.pieces, self._nats.max_payload - _header_size(headers))
            if not await self._publish(stream_id, subject, taken, headers):
                queue.pieces.extendleft(reversed(taken))  # never sent: packed again, smaller
                continue
            queue.acked += sum(piece.completes for piece in taken)
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

    async def _publish(
        self, stream_id: uuid.UUID, subject: str, taken: list[_Piece], headers: dict[str, str]
    ) -> bool:
        """Send one message until it is acknowledged; False if it no longer fits (the
        connection now has a smaller ``max_payload``: it was not sent)."""
        payload = b"[" + b",".join(piece.data for piece in taken) + b"]"
        delay = 0.05
        while True:
            started = time.perf_counter()
            try:
                ack = await self._js.publish_async(subject, payload, headers=headers)
                await asyncio.wait_for(ack, _ACK_TIMEOUT)
            except nats.errors.MaxPayloadError:
                log.warning("chat log of stream %s: max_payload shrank, packing again", stream_id)
                return False
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("chat log write for stream %s failed, retrying: %r", stream_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)
            else:
                self.on_published(time.perf_counter() - started)
                return True

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
            await self.unfinished(user_id), key=lambda last: (not last.begun, last.position)
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
        assembly = _Assembly()

        async def deliver(msg: Msg) -> None:
            nonlocal seen
            for entry in decode(stream_id, "", msg.data, assembly=assembly).entries:
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
        are written (core NATS); this instance's own are not even decoded. An entry cut
        into fragments arrives whole, with the message of its last fragment."""
        assemblies: dict[uuid.UUID, _Assembly] = {}  # of the streams with an entry half-read

        async def deliver(msg: Msg) -> None:
            owner = (msg.headers or {}).get(OWNER_HEADER, "")
            if owner != self.instance_id:
                stream_id = uuid.UUID(msg.subject.rsplit(".", 1)[1])
                assembly = assemblies.pop(stream_id, None) or _Assembly()
                logged = decode(stream_id, owner, msg.data, assembly=assembly)
                if assembly.pending:
                    assemblies[stream_id] = assembly
                await on_message(logged)

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
        self._assembly = _Assembly()

    async def deliver(self, msg: Msg) -> None:
        for entry in decode(self.stream_id, "", msg.data, assembly=self._assembly).entries:
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


def finished(entries: Sequence[Entry]) -> bool:
    return any(isinstance(entry, StreamEvent) and entry.name == "done" for entry in entries)


def _header_size(headers: dict[str, str]) -> int:
    """Bytes of ``headers`` on the wire, which ``max_payload`` counts with the payload."""
    lines = sum(len(f"{name}: {value}\r\n".encode()) for name, value in headers.items())
    return len(b"NATS/1.0\r\n") + lines + len(b"\r\n")


def _take(pieces: deque[_Piece], budget: int) -> list[_Piece]:
    """Pieces from the head of ``pieces`` for one message of at most ``budget`` bytes; at
    least one, a head too big for a message of its own cut into fragments first."""
    taken: list[_Piece] = []
    size = 2  # the array's brackets
    while pieces:
        head = pieces[0]
        if size + len(head.data) + bool(taken) <= budget:
            taken.append(pieces.popleft())
            size += len(head.data) + (len(taken) > 1)
        elif taken:
            break
        else:
            whole = head.whole or head.data
            while pieces and (pieces[0].whole or pieces[0].data) is whole:
                pieces.popleft()  # a whole entry, or what is left of its older fragments
            pieces.extendleft(reversed(_fragments(whole, budget - size)))
    return taken


def _fragments(whole: bytes, room: int) -> list[_Piece]:
    """An encoded entry cut at character boundaries into ``["f", tag, seq, count, index,
    text]`` pieces of at most ``room`` bytes each. Their text is JSON, which escapes at
    most two bytes per byte (quotes and backslashes, no control characters left)."""
    tag, seq = _fragment_key(orjson.loads(whole))
    overhead = len(orjson.dumps(["f", tag, seq, len(whole), len(whole), ""]))
    step = (room - overhead) // 2
    if step < 4:
        raise ValueError(f"max_payload leaves {room} bytes for a log message: too small")
    texts, start = [], 0
    while start < len(whole):
        end = min(start + step, len(whole))
        while end < len(whole) and whole[end] & 0xC0 == 0x80:  # inside a character
            end -= 1
        texts.append(whole[start:end].decode())
        start = end
    count = len(texts)
    return [
        _Piece(orjson.dumps(["f", tag, seq, count, index, text]), int(index == count - 1), whole)
        for index, text in enumerate(texts)
    ]


def _fragment_key(raw: list[Any]) -> tuple[str, int]:
    """What a fragment tells of its entry without it: its kind and event number (or 0)."""
    tag = raw[0]
    return tag, raw[1] if tag in ("c", "e") else 0


class _Assembly:
    """One stream's fragmented entry, joined as a reader meets its pieces in order.

    A piece out of turn is dropped: a repeat of the message before (JetStream stores a
    re-sent message twice after its duplicate window), or the tail of an entry whose
    beginning this reader did not see. A new first piece starts the entry again (the
    writer cut it anew for a smaller ``max_payload``).
    """

    def __init__(self) -> None:
        self._texts: list[str] = []

    @property
    def pending(self) -> bool:
        return bool(self._texts)

    def join(self, count: int, index: int, text: str) -> Any:
        """The entry, decoded, once ``text`` completes it; None before."""
        if index == 0:
            self._texts = [text]
        elif self._texts and index == len(self._texts):
            self._texts.append(text)
        else:
            return None
        if len(self._texts) < count:
            return None
        whole, self._texts = "".join(self._texts), []
        return orjson.loads(whole)


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


def decode(
    stream_id: uuid.UUID,
    owner: str,
    payload: bytes,
    *,
    position: int = 0,
    assembly: _Assembly | None = None,
) -> Logged:
    """One log message; ``assembly``: the reader's fragments so far (none: this message's
    own fragments join only among themselves)."""
    assembly = assembly or _Assembly()
    entries: list[Entry] = []
    seq, begun = 0, False
    for item in orjson.loads(payload):
        raw = item
        if item[0] == "f":
            _, tag, of, count, index, text = item
            begun = begun or tag != "s"
            seq = max(seq, of if index == count - 1 else of - 1)
            raw = assembly.join(count, index, text)
        match raw:
            case ["c", number, text]:
                chunk = MappingProxyType({"text": text})
                entries.append(StreamEvent(stream_id, number, "message_chunk", chunk))
            case ["e", number, name, data]:
                entries.append(StreamEvent(stream_id, number, name, MappingProxyType(data)))
            case ["s", cid, reference, text]:
                entries.append(StreamStarted(stream_id, uuid.UUID(cid), reference, text))
            case ["o", reason, error, metadata]:
                entries.append(TurnOutcome(stream_id, reason, error, MappingProxyType(metadata)))
    for entry in entries:
        begun = begun or not isinstance(entry, StreamStarted)
        if isinstance(entry, StreamEvent):
            seq = max(seq, entry.seq)
    return Logged(stream_id, owner, tuple(entries), position, seq, begun)
