"""The actor system: the root supervisor, its lifecycle, and what ops can see of it.

Start-up starts the children in order. Shutdown refuses new work first (every
:class:`ChildHandle` raises), then stops children newest first — each drains
its mailbox, so every acknowledged request is handled — then the root, and
finally joins every actor thread within the deadline, naming any that lingers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pykka

from .actor import Supervision, ThreadTracker
from .bridge import ask
from .messages import Failure, StopChildren, TakeSnapshot
from .supervisor import ChildHandle, ChildSpec, Intensity, Supervisor

log = logging.getLogger(__name__)


class ActorSystem:
    """Blocking to construct (it waits for the children to start): build it off the loop."""

    def __init__(
        self,
        children: Sequence[ChildSpec],
        *,
        intensity: Intensity,
        on_fatal: Callable[[], None] | None = None,
    ) -> None:
        self.closing = threading.Event()
        self.failures: dict[str, Failure] = {}
        self._tracker = ThreadTracker()
        self._on_fatal = on_fatal
        self._handles = {spec.name: ChildHandle(spec.name, self.closing) for spec in children}
        self.root: pykka.ActorRef[Supervisor] = Supervisor.start(
            Supervision("root", None, self._tracker),
            children,
            handles=self._handles,
            intensity=intensity,
            on_escalation=self._escalated,
        )
        # The root starts its children before its first message: once this is
        # answered, every handle points at a started child.
        try:
            self.root.ask(TakeSnapshot(), block=True, timeout=60)
        except BaseException:
            self.stop(timeout=10)
            raise

    def handle(self, name: str) -> ChildHandle:
        return self._handles[name]

    async def snapshot(self) -> dict[str, Any]:
        tree: dict[str, Any] = await ask(self.root, TakeSnapshot(), timeout=5.0)
        return tree

    async def check(self) -> None:
        """Readiness: raises naming every subtree that failed for good."""
        if self.failures:
            raise RuntimeError(
                "failed: "
                + "; ".join(f"{path} ({f.kind}: {f.message})" for path, f in self.failures.items())
            )

    def stop(self, timeout: float) -> list[str]:
        """Stop everything within ``timeout`` (blocking: call it off the event loop).

        Returns the names of threads still alive at the deadline.
        """
        self.closing.set()
        deadline = time.monotonic() + timeout
        try:
            late = self.root.ask(StopChildren(deadline - 0.05), block=True, timeout=timeout)
            if late:
                log.warning("actors still busy at the shutdown deadline: %s", ", ".join(late))
        except (pykka.Timeout, pykka.ActorDeadError) as exc:
            log.warning("root supervisor did not stop its children in time: %r", exc)
        finally:  # whatever happened, the root must end once it is free
            with contextlib.suppress(pykka.ActorDeadError):
                self.root.stop(block=False)
        alive = self._tracker.join(deadline)
        for thread in alive:
            log.error("actor thread %s still alive after shutdown", thread.name)
        return [thread.name for thread in alive]

    def _escalated(self, path: str, failure: Failure) -> None:
        """Runs on the root supervisor's thread when a child failed for good."""
        self.failures[path] = failure
        if self._on_fatal is not None:
            self._on_fatal()


def fatal_event(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> Callable[[], None]:
    """An ``on_fatal`` callback that sets ``event`` on ``loop`` from any thread."""

    def fire() -> None:
        loop.call_soon_threadsafe(event.set)

    return fire
