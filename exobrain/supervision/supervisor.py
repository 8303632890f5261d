"""A one-for-one supervisor with restart intensity and escalation, over pykka.

A child that ends is restarted according to its policy — ``permanent``
(always), ``transient`` (only after a failure) or ``temporary`` (never) —
after an exponential backoff. More than ``max_restarts`` restarts within
``window`` seconds means restarting does not help: the supervisor gives the
child up and escalates. The root supervisor reports that to its
``on_escalation`` callback (readiness turns 503, the process may exit); a
nested supervisor fails itself, and its own parent decides.

Messages to a child while it is down are not queued for the next
incarnation, whose state starts afresh: asks already in the dead mailbox fail
with ``ActorDeadError`` (pykka drains it), and new ones fail fast with
:class:`~exobrain.supervision.bridge.ActorUnavailable` from
:attr:`ChildHandle.ref`. Callers decide whether to retry.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import pykka

from .actor import SupervisedActor, Supervision
from .bridge import ActorUnavailable
from .messages import ChildExited, Failure, RestartChild, StopChildren, TakeSnapshot

log = logging.getLogger(__name__)

RestartPolicy = Literal["permanent", "transient", "temporary"]
ChildState = Literal["starting", "running", "restarting", "stopped", "failed"]

#: Starts one incarnation of a child, given its place in the tree.
StartChild = Callable[[Supervision], pykka.ActorRef[Any]]


@dataclass(frozen=True, slots=True)
class ChildSpec:
    name: str
    start: StartChild
    restart: RestartPolicy = "permanent"


@dataclass(frozen=True, slots=True)
class Intensity:
    """At most ``max_restarts`` within ``window`` seconds; backoff doubles between attempts."""

    max_restarts: int = 5
    window: float = 60.0
    backoff_initial: float = 0.05
    backoff_max: float = 5.0

    def backoff(self, attempt: int) -> float:
        return float(min(self.backoff_max, self.backoff_initial * 2 ** max(0, attempt - 1)))


class ChildHandle:
    """How code outside the tree reaches a child: always its current incarnation."""

    def __init__(self, name: str, closing: threading.Event) -> None:
        self.name = name
        self.state: ChildState = "starting"
        self._ref: pykka.ActorRef[Any] | None = None
        self._closing = closing

    @property
    def ref(self) -> pykka.ActorRef[Any]:
        """The running incarnation; raises :class:`ActorUnavailable` when there is none."""
        if self._closing.is_set():
            raise ActorUnavailable(f"{self.name}: shutting down")
        ref = self._ref
        if ref is None or not ref.is_alive():
            raise ActorUnavailable(f"{self.name} is {self.state}")
        return ref

    @property
    def urn(self) -> str | None:
        ref = self._ref
        return None if ref is None else ref.actor_urn

    def _set(self, ref: pykka.ActorRef[Any] | None, state: ChildState) -> None:
        self._ref, self.state = ref, state


@dataclass
class _Child:
    spec: ChildSpec
    handle: ChildHandle
    restarts: int = 0
    recent: deque[float] = field(default_factory=deque)
    last_failure: Failure | None = None
    started_at: float = 0.0


class SubtreeFailed(RuntimeError):
    """A nested supervisor gave up on a child; its parent applies its own policy."""


class Supervisor(SupervisedActor):
    #: Answers TakeSnapshot with its own children, which ops show nested.
    has_children = True

    def __init__(
        self,
        supervision: Supervision,
        children: Sequence[ChildSpec],
        *,
        handles: dict[str, ChildHandle],
        intensity: Intensity,
        on_escalation: Callable[[str, Failure], None] | None = None,
    ) -> None:
        super().__init__(supervision)
        self._children = {spec.name: _Child(spec, handles[spec.name]) for spec in children}
        self._intensity = intensity
        self._on_escalation = on_escalation
        self._timers: set[threading.Timer] = set()
        self._stopping = False
        self._failed: str | None = None
        self._started_at = time.monotonic()

    def started(self) -> None:
        for child in self._children.values():
            self._start(child)

    def on_receive(self, message: Any) -> Any:
        match message:
            case ChildExited(name=name, urn=urn, failure=failure):
                child = self._children.get(name)
                if child is not None and child.handle.urn == urn:
                    self._exited(child, failure)
            case RestartChild(name=name):
                self._timers = {timer for timer in self._timers if timer.is_alive()}
                child = self._children[name]
                if child.handle.state == "restarting" and not self._stopping:
                    child.restarts += 1
                    self._start(child)
            case TakeSnapshot():
                return self._snapshot()
            case StopChildren(deadline=deadline):
                return self._stop_children(max(0.0, deadline - time.monotonic()))
            case _:
                return super().on_receive(message)
        return None

    def stopping(self) -> None:
        self._stop_children(timeout=5.0)

    def failed(self, exc: BaseException | None) -> None:
        self._stop_children(timeout=5.0)  # pykka skips on_stop after a failure: no orphans

    def _start(self, child: _Child) -> None:
        supervision = Supervision(child.spec.name, self.actor_ref, self.supervision.tracker)
        try:
            ref = child.spec.start(supervision)
        except Exception as exc:
            log.exception("could not start %s", child.spec.name)
            child.handle._set(None, "restarting")
            self._exited(child, Failure.of(time.time(), exc))
            return
        child.handle._set(ref, "running")
        child.started_at = time.monotonic()

    def _exited(self, child: _Child, failure: Failure | None) -> None:
        name, policy = child.spec.name, child.spec.restart
        if failure is not None:
            child.last_failure = failure
        if self._stopping:
            child.handle._set(None, "stopped")
            return
        if policy == "temporary" or (policy == "transient" and failure is None):
            child.handle._set(None, "stopped" if failure is None else "failed")
            return
        now = time.monotonic()
        child.recent.append(now)
        while child.recent and child.recent[0] < now - self._intensity.window:
            child.recent.popleft()
        if len(child.recent) > self._intensity.max_restarts:
            child.handle._set(None, "failed")
            self._escalate(child, failure or Failure.of(time.time(), None))
            return
        child.handle._set(None, "restarting")
        delay = self._intensity.backoff(len(child.recent))
        log.warning(
            "%s ended (%s); restarting in %.2fs",
            name,
            f"{failure.kind}: {failure.message}" if failure else "stopped",
            delay,
        )
        timer = threading.Timer(delay, self._wake, args=(name,))
        timer.daemon = True
        self._timers.add(timer)
        timer.start()

    def _wake(self, name: str) -> None:
        """Runs on the timer's thread: only a message crosses back to the supervisor."""
        with contextlib.suppress(pykka.ActorDeadError):  # the supervisor stopped meanwhile
            self.actor_ref.tell(RestartChild(name))

    def _escalate(self, child: _Child, failure: Failure) -> None:
        path = f"{self.supervision.name}/{child.spec.name}"
        self._failed = f"{path}: {failure.kind}: {failure.message}"
        log.error(
            "%s restarted %d times in %.0fs; giving up: %s",
            path,
            len(child.recent) - 1,
            self._intensity.window,
            self._failed,
        )
        if self._on_escalation is not None:
            try:
                self._on_escalation(path, failure)
            except Exception:
                log.exception("escalation callback failed for %s", path)
            return
        self._stop_children(timeout=5.0)
        raise SubtreeFailed(self._failed)

    def _stop_children(self, timeout: float) -> list[str]:
        """Stop children newest first; each drains its mailbox. Returns the ones that timed out."""
        self._stopping = True
        for timer in list(self._timers):
            timer.cancel()
        deadline = time.monotonic() + timeout
        late = []
        for child in reversed(list(self._children.values())):
            ref = child.handle._ref
            if ref is None:
                continue
            try:
                ref.stop(block=True, timeout=max(0.0, deadline - time.monotonic()))
            except pykka.Timeout:
                late.append(child.spec.name)
            child.handle._set(None, "stopped")
        return late

    def _snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "name": self.supervision.name,
            "class": type(self).__name__,
            "state": "failed" if self._failed else ("stopping" if self._stopping else "running"),
            "mailbox": mailbox_depth(self.actor_ref),
            "uptime_s": round(now - self._started_at, 3),
            "failure": self._failed,
            "children": [self._child_snapshot(child, now) for child in self._children.values()],
        }

    def _child_snapshot(self, child: _Child, now: float) -> dict[str, Any]:
        ref = child.handle._ref
        running = ref is not None and ref.is_alive()
        entry: dict[str, Any] = {
            "name": child.spec.name,
            "class": ref.actor_class.__name__ if ref is not None else None,
            "state": child.handle.state,
            "restart": child.spec.restart,
            "mailbox": mailbox_depth(ref) if running and ref is not None else 0,
            "restarts": child.restarts,
            "uptime_s": round(now - child.started_at, 3) if running else 0.0,
            "last_failure": _failure_json(child.last_failure),
        }
        if running and ref is not None and getattr(ref.actor_class, "has_children", False):
            try:  # down the tree: a blocking ask is safe here
                entry["children"] = ref.ask(TakeSnapshot(), block=True, timeout=1.0)["children"]
            except (pykka.Timeout, pykka.ActorDeadError):
                entry["children"] = None
        return entry


def mailbox_depth(ref: pykka.ActorRef[Any]) -> int:
    inbox = ref.actor_inbox
    return inbox.qsize() if isinstance(inbox, queue.Queue) else 0


def _failure_json(failure: Failure | None) -> dict[str, str] | None:
    if failure is None:
        return None
    return {
        "at": datetime.fromtimestamp(failure.at, UTC).isoformat(),
        "kind": failure.kind,
        "message": failure.message,
    }
