"""The KnowledgeDispatchActor: uncommitted messages → token-bounded chunks → outbox → jobs.

One per process. A request selects the user's uncommitted messages, cuts
them into chunks on this thread, and writes one outbox row per chunk in the
transaction that moves the journals' watermarks past those messages; only
then are the rows enqueued, each with its row id as idempotency key, and
their job ids recorded. A crash anywhere in between leaves rows pending, never
lost: they are enqueued again on start and every ``resume_interval`` seconds,
and a repeated key is a no-op downstream, so each chunk reaches the stream once.

Enqueueing runs on the event loop, and the actor does not wait for it: it
replies :class:`Dispatching` (the update is accepted once its rows are
written) with a receipt that completes when the orchestrator has answered.
An orchestrator that is down, and waited for up to its deadline, therefore
delays no other update; the loop tells the actor when a round is over, so
that a resume never sends rows whose enqueue is still under way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg
import pykka

from exobrain.jobs import EnqueueBatch
from exobrain.supervision import LoopFuture, SupervisedActor, Supervision, run_on_loop

from . import store
from .chunking import TokenEstimator, chunk, estimate_tokens
from .enqueue import enqueue_all
from .messages import Dispatching, RequestUpdate, ResumePending, Settled, UpdateResult
from .store import Dispatch, Outcome

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Database work per step; enqueueing gets the orchestrator's deadline on top.
IO_TIMEOUT = 30.0
#: Selections retried when a concurrent dispatch commits some of their messages first.
SELECT_ATTEMPTS = 5
#: Pending rows enqueued per round of a resume.
RESUME_BATCH = 500
#: A failed round waits for the next tick; nothing is lost meanwhile (rows stay pending).
_TRANSIENT = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class KnowledgeDispatchActor(SupervisedActor):
    def __init__(
        self,
        supervision: Supervision,
        *,
        pool: asyncpg.Pool,
        loop: asyncio.AbstractEventLoop,
        enqueue: EnqueueBatch,
        max_tokens: int,
        enqueue_timeout: float,
        resume_interval: float,
        estimate: TokenEstimator = estimate_tokens,
    ) -> None:
        super().__init__(supervision)
        self._pool = pool
        self._loop = loop
        self._enqueue = enqueue
        self._max_tokens = max_tokens
        self._enqueue_timeout = enqueue_timeout
        self._resume_interval = resume_interval
        self._estimate = estimate
        self._timer: threading.Timer | None = None
        #: Rows whose enqueue is under way on the loop, and those rounds themselves.
        self._in_flight: set[uuid.UUID] = set()
        self._rounds: set[concurrent.futures.Future[None]] = set()
        self._resuming = False

    def started(self) -> None:
        self.actor_ref.tell(ResumePending())  # first in the mailbox, without delaying start-up

    def on_receive(self, message: Any) -> Any:
        match message:
            case RequestUpdate():
                return self._update(message)
            case ResumePending():
                self._resume()
                return None
            case Settled():
                self._settled(message)
                return None
            case _:
                return super().on_receive(message)

    def stopping(self) -> None:
        self._stop_rounds()

    def failed(self, exc: BaseException | None) -> None:
        self._stop_rounds()

    def _update(self, request: RequestUpdate) -> UpdateResult | Dispatching:
        dispatches = self._write_outbox(request)
        if not dispatches:
            return UpdateResult("nothing_to_update")
        return Dispatching(tuple(d.job_id for d in dispatches), self._send(dispatches))

    def _write_outbox(self, request: RequestUpdate) -> list[Dispatch]:
        for _ in range(SELECT_ATTEMPTS):
            selection = self._io(
                store.uncommitted(self._pool, request.user_id, request.journal_reference)
            )
            if not selection.entries:
                return []
            chunks = chunk(
                selection.entries,
                budget=self._max_tokens,
                requested_by=str(request.user_id),
                estimate=self._estimate,
            )
            try:
                return self._io(store.write(self._pool, request.user_id, selection, chunks))
            except store.AlreadyDispatched:
                log.info("messages of %s were dispatched concurrently; selecting again", request)
        raise RuntimeError(f"{request}: messages kept being dispatched concurrently")

    def _resume(self) -> None:
        """Send the oldest pending rows not already under way; one round at a time."""
        if self._resuming:
            return
        try:
            dispatches = self._io(store.pending(self._pool, RESUME_BATCH, besides=self._in_flight))
        except _TRANSIENT as exc:
            log.warning("resuming pending knowledge dispatches failed: %r", exc)
            dispatches = []
        if not dispatches:
            self._schedule_resume()
            return
        self._resuming = True
        self._send(dispatches, resumed=True)

    def _settled(self, round_: Settled) -> None:
        self._in_flight -= round_.ids
        if round_.resumed:
            self._resuming = False
            if round_.more:
                self.actor_ref.tell(ResumePending())
            else:
                self._schedule_resume()

    def _send(
        self, dispatches: list[Dispatch], *, resumed: bool = False
    ) -> LoopFuture[UpdateResult]:
        """Start a round of enqueues on the loop; the receipt completes when it is over."""
        ids = frozenset(dispatch.id for dispatch in dispatches)
        self._in_flight |= ids
        result: LoopFuture[UpdateResult] = LoopFuture()
        self._rounds = {round_ for round_ in self._rounds if not round_.done()}
        coroutine = self._round(dispatches, result, resumed=resumed)
        try:
            self._rounds.add(asyncio.run_coroutine_threadsafe(coroutine, self._loop))
        except RuntimeError:  # the loop is closed: the rows stay pending for the next start
            coroutine.close()
            raise
        return result

    async def _round(
        self, dispatches: list[Dispatch], result: LoopFuture[UpdateResult], *, resumed: bool
    ) -> None:
        """On the loop: enqueue, record, complete the receipt, and tell the actor."""
        outcomes: list[Outcome] = []
        try:
            outcomes = await self._enqueue_and_record(dispatches)
            result.set(UpdateResult.of(outcomes))
        except asyncio.CancelledError:  # the actor stopped: the rows stay pending
            result.set(UpdateResult("pending", tuple(d.job_id for d in dispatches)))
            raise
        except Exception as exc:  # a bug: the rows stay pending, and the asker hears it
            log.exception("enqueueing %d knowledge dispatches failed", len(dispatches))
            result.set_exception((type(exc), exc, exc.__traceback__))
        finally:
            more = len(outcomes) == RESUME_BATCH and all(o.status != "pending" for o in outcomes)
            with contextlib.suppress(pykka.ActorDeadError):
                self.actor_ref.tell(Settled(frozenset(d.id for d in dispatches), resumed, more))

    async def _enqueue_and_record(self, dispatches: list[Dispatch]) -> list[Outcome]:
        try:
            async with asyncio.timeout(IO_TIMEOUT + self._enqueue_timeout):
                outcomes = await enqueue_all(self._enqueue, dispatches)
        except TimeoutError:  # some may have gone out: their retry is a no-op downstream
            outcomes = [Outcome(d.id, "pending", error="enqueue timed out") for d in dispatches]
        try:
            async with asyncio.timeout(IO_TIMEOUT):
                await store.record(self._pool, outcomes)
        except _TRANSIENT as exc:  # the rows stay pending; sent again, they add nothing
            log.warning("recording %d knowledge dispatches failed: %r", len(outcomes), exc)
        return outcomes

    def _io(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return run_on_loop(self._loop, coroutine, timeout=IO_TIMEOUT)

    def _schedule_resume(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = threading.Timer(self._resume_interval, self._wake)
        self._timer.daemon = True
        self._timer.start()

    def _stop_rounds(self) -> None:
        """Rounds under way are cancelled: their rows stay pending for the next start."""
        if self._timer is not None:
            self._timer.cancel()
        for round_ in self._rounds:
            round_.cancel()

    def _wake(self) -> None:
        """Runs on the timer's thread: only a message crosses back to the actor."""
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(ResumePending())
