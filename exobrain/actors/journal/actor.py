"""The JournalActor: the single writer of chat persistence, with group commit.

Appends queue in the mailbox while a batch is being written; the next batch
takes all of them in one transaction. A batch closes when it reaches
``max_batch`` commands or when the mailbox has nothing more for it: the first
append of a batch tells the actor a ``Flush`` that queues *behind* every
append already waiting, and an optional linger (``max_delay``) lets a few
more arrive before the write. Each caller gets a receipt that completes only
after COMMIT, so nobody is told "saved" for a row that is not in the
database. After each commit, and before any caller is answered, the changed
journals are announced to listeners, so a read cache that invalidates on the
announcement can never serve a page older than a write its reader saw
acknowledged. Listeners are coroutines run on the event loop right after the
commit, in the same visit to the loop as the write; each bounds its own time
and never raises.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from exobrain.metrics import Metrics
from exobrain.supervision import LoopFuture, SupervisedActor, Supervision, run_on_loop

from .messages import AppendMessages, Flush, JournalChanged, StoredMessage
from .store import write_batch

log = logging.getLogger(__name__)

Listener = Callable[[JournalChanged], Awaitable[None]]
#: What an append's caller waits on: completed after COMMIT, from the loop.
Receipt = LoopFuture[tuple[StoredMessage, ...]]


class JournalActor(SupervisedActor):
    def __init__(
        self,
        supervision: Supervision,
        *,
        pool: asyncpg.Pool,
        loop: asyncio.AbstractEventLoop,
        max_batch: int,
        max_delay: float,
        write_timeout: float,
        metrics: Metrics,
        listeners: Sequence[Listener] = (),
    ) -> None:
        super().__init__(supervision)
        self._pool = pool
        self._loop = loop
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._write_timeout = write_timeout
        self._metrics = metrics
        self._listeners = tuple(listeners)
        self._pending: list[tuple[AppendMessages, Receipt]] = []
        self._flush_queued = False

    def on_receive(self, message: Any) -> Any:
        match message:
            case AppendMessages():
                receipt: Receipt = LoopFuture()
                self._pending.append((message, receipt))
                if len(self._pending) >= self._max_batch:
                    self._flush()
                elif not self._flush_queued:
                    self._queue_flush(lingered=False)
                return receipt
            case Flush(lingered=lingered):
                self._flush_queued = False
                if lingered or self._max_delay <= 0 or not self._pending:
                    self._flush()
                else:
                    time.sleep(self._max_delay)  # let more appends queue up behind us
                    self._queue_flush(lingered=True)
                return None
            case _:
                return super().on_receive(message)

    def stopping(self) -> None:
        self._flush()

    def failed(self, exc: BaseException | None) -> None:
        self._fail(self._pending, exc or RuntimeError("journal actor failed"))
        self._pending = []

    def _queue_flush(self, *, lingered: bool) -> None:
        self._flush_queued = True
        self.actor_ref.tell(Flush(lingered=lingered))

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            run_on_loop(
                self._loop,
                self._commit(batch),
                timeout=2 * self._write_timeout,  # the write's, then the listeners' own bounds
            )
        except Exception as exc:  # the whole batch failed: every caller still waiting hears it
            log.warning("journal batch of %d failed: %r", len(batch), exc)
            self._fail(batch, exc)

    async def _commit(self, batch: list[tuple[AppendMessages, Receipt]]) -> None:
        """On the loop: write the batch, announce it, then answer its callers from here
        (the writers wait on the loop or block on the receipt: neither needs this thread)."""
        commands = [command for command, _ in batch]
        started = time.perf_counter()
        async with asyncio.timeout(self._write_timeout):
            outcomes = await write_batch(self._pool, commands)
        self._metrics.journal_batch_size.observe(len(commands))
        self._metrics.journal_commit_seconds.observe(time.perf_counter() - started)
        changed = frozenset(
            (command.user_id, command.reference)
            for command, outcome in zip(commands, outcomes, strict=True)
            if not isinstance(outcome, Exception) and not all(m.duplicate for m in outcome)
        )
        if changed:  # no reader can then see a page older than a write it saw acknowledged
            event = JournalChanged(changed)
            for listener in self._listeners:
                try:
                    await listener(event)
                except Exception:
                    log.exception("journal listener %r failed", listener)
        for (_, receipt), outcome in zip(batch, outcomes, strict=True):
            receipt.settle(outcome)

    @staticmethod
    def _fail(batch: list[tuple[AppendMessages, Receipt]], exc: BaseException) -> None:
        for _, receipt in batch:
            receipt.settle(exc)
