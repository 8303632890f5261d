"""The SessionActor: one per active user cluster-wide, owner of that user's chat state.

It runs on the instance that holds the user's lease, for one ownership epoch,
and every durable write it makes carries that epoch (a stale one is refused:
:class:`NotOwner`). It holds the day's conversation window, the streams of
recent turns (their events and readers), the running turn and the turns
waiting behind it. One turn runs at a time; a message is stored before it is
acknowledged; every stream is also written to the chat log, where readers on
other instances follow it. A crash ends the running turn's stream with
``error`` then ``done`` and takes no other user's session with it.

A new incarnation rebuilds the window from PostgreSQL and takes over the
turns the previous owner left unfinished in the log (Orleans' reactivation):
a turn that never started runs now; one cut short is stored as the log has
it and ended. The user's attached connections follow every stream it
starts; the manager owns that set and hands it to each incarnation.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pykka

from exobrain.actors.journal import AppendMessages, Fenced, NewMessage, StoredMessage
from exobrain.agent.events import Done, Error, Event
from exobrain.supervision import SupervisedActor, Supervision, run_on_loop

from .log import Orphan
from .messages import (
    Accepted,
    Attach,
    CancelTurn,
    Detach,
    Evicted,
    NotOwner,
    SendMessage,
    StreamNotFound,
    Subscribe,
    Subscribed,
    Tick,
    TurnEvents,
    TurnFinished,
    TurnRejected,
    Unsubscribe,
)
from .retention import StreamBudget
from .stream import ActiveStream, Sink, Stream, StreamEvent, StreamStarted, Subscription
from .turn import ABANDONED, Agent, TurnRequest, finish_orphan, run_chat_turn

log = logging.getLogger(__name__)

#: Namespace of stream ids: one stream per (user, client_message_id), whoever retries.
_STREAMS = uuid.UUID("5d0f6a7e-2c43-4b8e-9f21-7a6b3c9d1e08")


@dataclass(frozen=True, slots=True)
class SessionLimits:
    max_pending_turns: int
    context_max_chars: int
    stream_retention: float
    streams_per_user: int
    idle_seconds: float


@dataclass(frozen=True, slots=True)
class _Queued:
    stream_id: uuid.UUID
    reference: str
    text: str
    #: Set for a turn its previous owner cut short: it is ended, not run.
    orphan: Orphan | None = None


def today() -> str:
    return datetime.now(UTC).strftime("%Y/%m/%d")


def stream_id_for(user_id: uuid.UUID, client_message_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(_STREAMS, f"{user_id}:{client_message_id}")


class SessionActor(SupervisedActor):
    def __init__(
        self,
        supervision: Supervision,
        *,
        user_id: uuid.UUID,
        epoch: int,
        inherited: bool,
        agent: Agent,
        pool: asyncpg.Pool,
        loop: asyncio.AbstractEventLoop,
        limits: SessionLimits,
        budget: StreamBudget,
        attached: frozenset[Subscription] = frozenset(),
    ) -> None:
        super().__init__(supervision)
        self._user_id = user_id
        self.epoch = epoch
        self._inherited = inherited
        self._log = agent.log
        self._agent = agent
        self._pool = pool
        self._loop = loop
        self._limits = limits
        self._budget = budget
        self._streams: dict[uuid.UUID, Stream] = {}
        self._attached = set(attached)  # the user's connections, handed over by the manager
        self._queue: deque[_Queued] = deque()
        self._running: tuple[_Queued, concurrent.futures.Future[TurnFinished]] | None = None
        self._window: list[dict[str, str]] = []
        self._window_reference = today()
        self._idle_since = time.monotonic()

    def started(self) -> None:
        self._window, orphans = run_on_loop(
            self._loop, self._restore(self._window_reference), timeout=10
        )
        for orphan in orphans:
            self._adopt(orphan)
        self._start_next()

    async def _restore(self, reference: str) -> tuple[list[dict[str, str]], list[Orphan]]:
        """The day's window; and, from a last owner that did not release the user, what it
        left unfinished (searching the log costs a JetStream request per stream)."""
        if not self._inherited:
            return await _recent_messages(self._pool, self._user_id, reference), []
        window, orphans = await asyncio.gather(
            _recent_messages(self._pool, self._user_id, reference),
            self._log.orphans(self._user_id),
        )
        return window, orphans

    def _adopt(self, orphan: Orphan) -> None:
        """Take over a turn the previous owner left: run it, or end it if it had begun."""
        started = orphan.started
        stream = self._hold(started, orphan.events)
        begun = orphan.events or orphan.outcome is not None
        self._queue.append(
            _Queued(
                started.stream_id,
                started.journal_reference,
                started.message,
                orphan if begun else None,
            )
        )
        log.info("took over %s turn %s", "a cut-short" if begun else "a waiting", stream.stream_id)

    def on_receive(self, message: Any) -> Any:
        match message:
            case SendMessage():
                return self._send(message)
            case Subscribe(stream_id=stream_id, after_seq=after_seq, sink=sink):
                return self._subscribe(self._stream(stream_id), after_seq, sink)
            case CancelTurn(stream_id=stream_id):
                return self._cancel(stream_id)
            case Unsubscribe(stream_id=stream_id, sink=sink):
                self._unsubscribe(stream_id, sink)
            case Attach(sink=sink):
                self._attached.add(sink)
                sink.push([ActiveStream(s.stream_id, s.last_seq) for s in self._unfinished()])
            case Detach(sink=sink):
                self._attached.discard(sink)
                for stream in self._streams.values():
                    stream.subscribers.discard(sink)
            case TurnEvents(stream_id=stream_id, events=events):
                self._append(self._streams[stream_id], events)
            case TurnFinished():
                self._finish(message)
            case Evicted(stream_id=stream_id):
                self._evicted(stream_id)
            case Tick():
                self._tick()
            case _:
                return super().on_receive(message)
        return None

    def stopping(self) -> None:
        """Store the running turn if it ends in time; waiting turns go to the next owner,
        which finds them unfinished in the log."""
        if self._running is not None:
            _, future = self._running
            with contextlib.suppress(
                concurrent.futures.TimeoutError, concurrent.futures.CancelledError
            ):
                self._finish(future.result(timeout=self._agent.write_timeout + 5))
        self._release_all()

    def failed(self, exc: BaseException | None) -> None:
        if self._running is not None:
            queued, future = self._running
            future.cancel()
            self._queue.appendleft(queued)
        self._end_unanswered("the chat session failed; please try again")
        self._release_all()

    def _release_all(self) -> None:
        """This session's streams go with it: their bytes leave the process's budget."""
        for stream in self._streams.values():
            stream.release()

    def _end_unanswered(self, why: str) -> None:
        """Streams that will get no answer end with ``error`` then ``done``."""
        for queued in self._queue:
            self._append(self._streams[queued.stream_id], [Error(None, why), Done("error")])
        self._queue.clear()

    def _append(self, stream: Stream, events: list[Event] | tuple[Event, ...]) -> None:
        self._log.write(self._user_id, stream.stream_id, stream.append(events))

    def _send(self, message: SendMessage) -> Accepted:
        stream_id = stream_id_for(self._user_id, message.client_message_id)
        if stream_id in self._streams:
            stream = self._streams[stream_id]
            return Accepted(stream_id, stream.reference, duplicate=True)
        busy = self._running is not None
        if busy and len(self._queue) >= self._limits.max_pending_turns:
            raise TurnRejected("too many messages are waiting for an answer")
        reference = today()
        try:
            [stored] = self._store(
                NewMessage("user", message.text, client_message_id=message.client_message_id),
                reference,
            )
        except Fenced:
            self.actor_ref.stop(block=False)
            raise NotOwner(str(self._user_id)) from None
        if stored.duplicate:  # stored before this incarnation: by an earlier owner
            return Accepted(stream_id, reference, duplicate=True, held=False)
        started = StreamStarted(stream_id, message.client_message_id, reference, message.text)
        self._hold(started)
        for sink in self._attached:  # every tab shows the question before the answer
            sink.push([started])
        self._log.write(self._user_id, stream_id, [started])
        self._forget_old_streams()
        self._queue.append(_Queued(stream_id, reference, message.text))
        self._start_next()
        return Accepted(stream_id, reference, duplicate=False)

    def _hold(self, started: StreamStarted, events: tuple[StreamEvent, ...] = ()) -> Stream:
        """A new stream in memory, followed by the user's connections; past the process's
        budget, the budget asks this actor to drop it once it has finished."""
        stream_id, ref = started.stream_id, self.actor_ref

        def evict() -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(Evicted(stream_id))

        stream = self._streams[stream_id] = Stream(started, self._budget.share(evict), events)
        stream.subscribers |= self._attached
        return stream

    def _evicted(self, stream_id: uuid.UUID) -> None:
        finished = self._streams.get(stream_id)
        if finished is not None and finished.finished:
            self._drop(finished)

    def _drop(self, stream: Stream) -> None:
        del self._streams[stream.stream_id]
        stream.release()

    def _store(self, message: NewMessage, reference: str) -> tuple[StoredMessage, ...]:
        """Through the JournalActor, on this thread: it never waits on us."""
        timeout = self._agent.write_timeout
        command = AppendMessages(self._user_id, reference, (message,), self.epoch)
        receipt = self._agent.journal.ref.ask(command, block=True, timeout=timeout)
        stored: tuple[StoredMessage, ...] = receipt.get(timeout=timeout)
        return stored

    def _start_next(self) -> None:
        if self._running is not None or not self._queue:
            return
        queued = self._queue.popleft()
        request = TurnRequest(
            self._user_id, queued.reference, queued.stream_id, self._history(queued.reference),
            queued.text, self.epoch,
        )  # fmt: skip
        turn = (
            run_chat_turn(self._agent, request, self._from_turn)
            if queued.orphan is None
            else finish_orphan(self._agent, request, queued.orphan, self._from_turn)
        )
        self._running = (queued, asyncio.run_coroutine_threadsafe(turn, self._loop))

    def _from_turn(self, message: Any) -> None:
        """Runs on the loop: the turn's messages to this actor."""
        with contextlib.suppress(pykka.ActorDeadError):  # a stopped session needs no more
            self.actor_ref.tell(message)

    def _finish(self, finished: TurnFinished) -> None:
        if self._running is None or self._running[0].stream_id != finished.stream_id:
            return
        queued, _ = self._running
        self._running = None
        if finished.reason == ABANDONED:  # fenced: the new owner ends it from the log
            self.actor_ref.stop(block=False)
            return
        ending: list[Event] = [Done(finished.reason)]
        if finished.error is not None:
            ending.insert(0, Error(None, finished.error))
        self._append(self._streams[finished.stream_id], ending)
        if queued.reference == self._window_reference:
            self._window += [
                {"role": "user", "content": queued.text},
                {"role": "assistant", "content": finished.answer},
            ]
        self._idle_since = time.monotonic()
        self._start_next()

    def _cancel(self, stream_id: uuid.UUID) -> bool:
        stream = self._stream(stream_id)
        if self._running is not None and self._running[0].stream_id == stream_id:
            self._running[1].cancel()
            return True
        for queued in self._queue:
            if queued.stream_id == stream_id:
                self._queue.remove(queued)
                self._append(stream, [Done("cancelled")])
                return True
        return False

    def _subscribe(self, stream: Stream, after_seq: int, sink: Sink) -> Subscribed:
        sink.push(tuple(stream.after(after_seq)))
        if not stream.finished:
            stream.subscribers.add(sink)
        return Subscribed(stream.last_seq, stream.finished)

    def _unsubscribe(self, stream_id: uuid.UUID, sink: Sink) -> None:
        if stream_id in self._streams:
            self._streams[stream_id].subscribers.discard(sink)

    def _unfinished(self) -> list[Stream]:
        return [stream for stream in self._streams.values() if not stream.finished]

    def _stream(self, stream_id: uuid.UUID) -> Stream:
        try:
            return self._streams[stream_id]
        except KeyError:
            raise StreamNotFound(str(stream_id)) from None

    def _history(self, reference: str) -> tuple[dict[str, str], ...]:
        """The day's earlier messages, oldest dropped first to fit the context budget."""
        if reference != self._window_reference:
            self._window, self._window_reference = [], reference
        budget, kept = self._limits.context_max_chars, []
        for message in reversed(self._window):
            budget -= len(message["content"])
            if budget < 0:
                break
            kept.append(message)
        self._window = kept[::-1]
        return tuple(self._window)

    def _forget_old_streams(self) -> None:
        finished = [s for s in self._streams.values() if s.finished and not s.subscribers]
        excess = len(self._streams) - self._limits.streams_per_user
        for stream in finished[: max(0, excess)]:
            self._drop(stream)

    def _tick(self) -> None:
        now = time.monotonic()
        retention = self._limits.stream_retention
        for stream in list(self._streams.values()):
            finished_at = stream.finished_at
            if finished_at is not None and now - finished_at > retention and not stream.subscribers:
                self._drop(stream)
        idle = self._running is None and not (self._queue or self._streams)
        if idle and now - self._idle_since > self._limits.idle_seconds:
            self.actor_ref.stop(block=False)


async def _recent_messages(
    pool: asyncpg.Pool, user_id: uuid.UUID, reference: str
) -> list[dict[str, str]]:
    rows = await pool.fetch(
        """
        SELECT m.role, m.content FROM messages m
        JOIN conversations c ON c.id = m.conversation_id
        WHERE c.user_id = $1 AND c.reference = $2 AND m.role IN ('user', 'assistant')
        ORDER BY m.sequence DESC LIMIT 200
        """,
        user_id,
        reference,
    )
    return [{"role": row["role"], "content": row["content"]} for row in reversed(rows)]
