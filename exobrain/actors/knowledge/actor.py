"""The KnowledgeDispatchActor: uncommitted messages → token-bounded chunks → outbox → jobs.

One per process. A request selects the user's uncommitted messages, cuts
them into chunks on this thread, and writes one outbox row per chunk in the
transaction that moves the journals' watermarks past those messages; only
then are the rows enqueued, each with its row id as idempotency key, and
their job ids recorded. A crash anywhere in between leaves rows pending, never
lost: they are enqueued again on start and every ``resume_interval`` seconds,
and a repeated key is a no-op downstream, so each chunk reaches the stream once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg
import pykka

from exobrain.jobs import Enqueue
from exobrain.supervision import SupervisedActor, Supervision, run_on_loop

from . import store
from .chunking import TokenEstimator, chunk, estimate_tokens
from .enqueue import enqueue_all
from .messages import RequestUpdate, ResumePending, UpdateResult
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
        enqueue: Enqueue,
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

    def started(self) -> None:
        self.actor_ref.tell(ResumePending())  # first in the mailbox, without delaying start-up

    def on_receive(self, message: Any) -> Any:
        match message:
            case RequestUpdate():
                return self._update(message)
            case ResumePending():
                try:
                    self._resume()
                except _TRANSIENT as exc:
                    log.warning("resuming pending knowledge dispatches failed: %r", exc)
                self._schedule_resume()
                return None
            case _:
                return super().on_receive(message)

    def stopping(self) -> None:
        self._cancel_resume()

    def failed(self, exc: BaseException | None) -> None:
        self._cancel_resume()

    def _update(self, request: RequestUpdate) -> UpdateResult:
        dispatches = self._write_outbox(request)
        if not dispatches:
            return UpdateResult("nothing_to_update")
        return UpdateResult.of(self._dispatch(dispatches))

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

    def _dispatch(self, dispatches: list[Dispatch]) -> list[Outcome]:
        try:
            outcomes = run_on_loop(
                self._loop,
                enqueue_all(self._enqueue, dispatches),
                timeout=IO_TIMEOUT + self._enqueue_timeout,
            )
        except TimeoutError:  # some may have gone out: their retry is a no-op downstream
            return [Outcome(d.id, "pending", error="enqueue timed out") for d in dispatches]
        self._io(store.record(self._pool, outcomes))
        return outcomes

    def _resume(self) -> None:
        while dispatches := self._io(store.pending(self._pool, RESUME_BATCH)):
            outcomes = self._dispatch(dispatches)
            if len(dispatches) < RESUME_BATCH or any(o.status == "pending" for o in outcomes):
                return

    def _io(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return run_on_loop(self._loop, coroutine, timeout=IO_TIMEOUT)

    def _schedule_resume(self) -> None:
        self._timer = threading.Timer(self._resume_interval, self._wake)
        self._timer.daemon = True
        self._timer.start()

    def _cancel_resume(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _wake(self) -> None:
        """Runs on the timer's thread: only a message crosses back to the actor."""
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(ResumePending())
