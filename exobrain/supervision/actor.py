"""The base of every supervised actor: reports its end to its supervisor.

pykka has no links or monitors, so the child tells its supervisor itself:
``on_failure`` (an exception in a ``tell``), an exception in ``on_start``
(which pykka reports without ``on_failure``), and a normal stop all become a
:class:`~exobrain.supervision.messages.ChildExited` told to the parent.
Replies are :class:`~exobrain.supervision.bridge.LoopFuture` so the event loop
can await them.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import pykka

from .bridge import LoopFuture
from .messages import ChildExited, Failure

log = logging.getLogger(__name__)


@dataclass
class ThreadTracker:
    """Every actor thread started under one actor system, so shutdown can join them."""

    threads: set[threading.Thread] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, thread: threading.Thread) -> None:
        with self.lock:
            self.threads.add(thread)

    def join(self, deadline: float) -> list[threading.Thread]:
        """Join every thread until ``deadline`` (monotonic); return the ones still alive."""
        with self.lock:
            threads = [t for t in self.threads if t is not threading.current_thread()]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [thread for thread in threads if thread.is_alive()]
        with self.lock:
            self.threads.difference_update(set(threads) - set(alive))
        return alive


@dataclass(frozen=True, slots=True)
class Supervision:
    """What a child needs to know about its place in the tree."""

    name: str
    parent: pykka.ActorRef[Any] | None
    tracker: ThreadTracker


class SupervisedActor(pykka.ThreadingActor):
    """A pykka actor that a :class:`~exobrain.supervision.supervisor.Supervisor` can restart.

    Subclasses put their start-up in :meth:`started` and their clean-up in
    :meth:`stopping`; both run on the actor's thread.
    """

    use_daemon_thread = False

    def __init__(self, supervision: Supervision) -> None:
        super().__init__()
        self.supervision = supervision

    @staticmethod
    def _create_future() -> pykka.Future[Any]:
        return LoopFuture()

    def started(self) -> None:
        """Hook: runs on the actor thread before the first message."""

    def stopping(self) -> None:
        """Hook: runs on the actor thread after the last message of a normal stop."""

    def failed(self, exc: BaseException | None) -> None:
        """Hook: runs on the actor thread when it dies of ``exc``."""

    def on_start(self) -> None:
        self.supervision.tracker.add(threading.current_thread())
        try:
            self.started()
        except Exception as exc:
            self._report_exit(Failure.of(time.time(), exc))
            raise

    def on_stop(self) -> None:
        try:
            self.stopping()
        except Exception as exc:
            self._report_exit(Failure.of(time.time(), exc))
            raise
        self._report_exit(None)

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self.failed(exception_value)
        finally:
            self._report_exit(Failure.of(time.time(), exception_value))

    def _report_exit(self, failure: Failure | None) -> None:
        parent = self.supervision.parent
        if parent is None:
            return
        try:
            parent.tell(ChildExited(self.supervision.name, self.actor_urn, failure))
        except pykka.ActorDeadError:
            log.debug("%s outlived its supervisor", self.supervision.name)
