"""The actor system's shutdown: refuse new work, drain, stop leaves first, join every thread.

Proven here (DESIGN.md §4, and the two-phase close of STYLE.md):

- ``stop()`` drains: asks queued in a busy child's mailbox before the stop are all answered;
  children stop newest first while their supervisor is still alive, nested subtrees leaf
  first; afterwards the root is gone, the system answers no more asks, and no actor thread
  of the system is alive (``threading.enumerate()`` before and after);
- once ``stop()`` has begun, every ``ChildHandle.ref`` raises ``ActorUnavailable`` ("shutting
  down") although the child itself is still running;
- a child blocked in its handler past the deadline makes ``stop()`` return on time, naming the
  thread that outlived it; once the handler returns, the system must still end completely
  (the root supervisor still ends once it is free).
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pykka
import pytest

from exobrain.supervision import (
    ActorUnavailable,
    ChildHandle,
    ChildSpec,
    SupervisedActor,
    Supervision,
    Supervisor,
    ask,
    tell,
    wait,
)

from .support import FAST, StartSystem, actor_threads, answering, eventually, signalled, started


@dataclass(frozen=True, slots=True)
class Hold:
    """Signal ``entered`` and block the handler until ``release``."""

    entered: threading.Event
    release: threading.Event


@dataclass(frozen=True, slots=True)
class Crash:
    """Raise ``RuntimeError(text)``: told, it kills the worker."""

    text: str


@dataclass
class Record:
    """What the actors of one test saw: their threads, and the order of their stops.

    Each stop notes whether the root supervisor (``root``, set by the test) was still alive.
    """

    root: pykka.ActorRef[Any] | None = None
    threads: list[threading.Thread] = field(default_factory=list)
    stops: list[tuple[str, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def stopped(self, what: str) -> None:
        with self.lock:
            self.stops.append((what, self.root is not None and self.root.is_alive()))


class Worker(SupervisedActor):
    """Replies ``("done", message)``; on stop, notes whether its supervisor was still alive."""

    def __init__(self, supervision: Supervision, record: Record) -> None:
        super().__init__(supervision)
        self.record = record

    def started(self) -> None:
        with self.record.lock:
            self.record.threads.append(threading.current_thread())

    def stopping(self) -> None:
        self.record.stopped(self.supervision.name)

    def on_receive(self, message: Any) -> Any:
        match message:
            case Crash(text=text):
                raise RuntimeError(text)
            case Hold(entered=entered, release=release):
                entered.set()
                if not release.wait(10):
                    raise TimeoutError("the test never released the worker")
                return "released"
            case _:
                return ("done", message)


class RecordingSupervisor(Supervisor):
    """A nested supervisor that notes when its own stop begins and ends."""

    record: Record

    def stopping(self) -> None:
        self.record.stopped(f"{self.supervision.name} stopping")
        super().stopping()
        self.record.stopped(f"{self.supervision.name} stopped")


def worker(name: str, record: Record) -> ChildSpec:
    return ChildSpec(name, lambda supervision: Worker.start(supervision, record))


def system_threads(before: set[threading.Thread]) -> list[str]:
    """Actor threads alive now that were not before the system started."""
    return [thread.name for thread in actor_threads() if thread not in before]


async def test_stop_drains_stops_children_before_the_root_and_leaves_no_thread(
    start_system: StartSystem,
) -> None:
    before = set(threading.enumerate())
    record = Record()
    system = await start_system([worker("first", record), worker("second", record)])
    record.root = system.root
    first = await started(system, "first")
    second = await started(system, "second")
    assert len(system_threads(before)) == 3  # root and two workers
    busy, other = first.ref, second.ref

    entered, release = threading.Event(), threading.Event()
    try:
        tell(busy, Hold(entered, release))
        await signalled(entered, "first is busy")
        queued = [busy.ask(("job", n), block=False) for n in range(20)]
        queued += [other.ask(("other", n), block=False) for n in range(5)]
        stopping = asyncio.create_task(asyncio.to_thread(system.stop, 10))
        await eventually(system.closing.is_set, "stop() has begun")
    finally:
        release.set()
    assert await stopping == []

    replies = await asyncio.gather(*(wait(future, timeout=5) for future in queued))
    assert replies == [("done", ("job", n)) for n in range(20)] + [
        ("done", ("other", n)) for n in range(5)
    ]
    assert record.stops == [("second", True), ("first", True)]  # newest first, root alive
    assert not system.root.is_alive()
    assert not any(thread.is_alive() for thread in record.threads)
    assert system_threads(before) == []
    with pytest.raises(ActorUnavailable):
        await system.snapshot()


async def test_stop_takes_nested_subtrees_down_leaves_first(start_system: StartSystem) -> None:
    before = set(threading.enumerate())
    record = Record()
    leaf_handles = {"leaf": ChildHandle("leaf", threading.Event())}

    def start_inner(supervision: Supervision) -> pykka.ActorRef[Any]:
        RecordingSupervisor.record = record
        return RecordingSupervisor.start(
            supervision, [worker("leaf", record)], handles=leaf_handles, intensity=FAST
        )

    system = await start_system([worker("outer", record), ChildSpec("inner", start_inner)])
    record.root = system.root
    await started(system, "outer")
    await started(system, "inner")
    await answering(leaf_handles["leaf"])
    assert len(system_threads(before)) == 4  # root, outer, inner and leaf

    assert await asyncio.to_thread(system.stop, 5) == []
    # inner (newest) goes first and takes its leaf down before it ends itself; all of it
    # while the root is still alive.
    assert record.stops == [
        ("inner stopping", True),
        ("leaf", True),
        ("inner stopped", True),
        ("outer", True),
    ]
    assert system.handle("inner").state == "stopped"
    assert leaf_handles["leaf"].state == "stopped"
    assert system_threads(before) == []


async def test_handles_refuse_new_work_once_stop_has_begun(start_system: StartSystem) -> None:
    record = Record()
    system = await start_system([worker("busy", record), worker("idle", record)])
    busy = await started(system, "busy")
    idle = await started(system, "idle")
    busy_ref, idle_ref = busy.ref, idle.ref
    assert await ask(idle_ref, "before", timeout=5) == ("done", "before")

    entered, release = threading.Event(), threading.Event()
    try:
        tell(busy_ref, Hold(entered, release))
        await signalled(entered, "busy is busy")
        stopping = asyncio.create_task(asyncio.to_thread(system.stop, 10))
        await eventually(system.closing.is_set, "stop() has begun")
        assert busy_ref.is_alive()  # still running: the refusal comes from the shutdown
        for handle in (busy, idle):
            with pytest.raises(ActorUnavailable, match=f"{handle.name}: shutting down"):
                _ = handle.ref
    finally:
        release.set()
    assert await stopping == []
    with pytest.raises(ActorUnavailable, match="idle: shutting down"):
        _ = idle.ref


async def test_stop_names_the_threads_that_outlive_its_deadline(
    start_system: StartSystem,
) -> None:
    record = Record()
    system = await start_system([worker("stuck", record)])
    record.root = system.root
    stuck = await started(system, "stuck")
    [stuck_thread] = record.threads
    entered, release = threading.Event(), threading.Event()
    try:
        tell(stuck.ref, Hold(entered, release))
        await signalled(entered, "stuck is blocked")
        began = time.monotonic()
        late = await asyncio.to_thread(system.stop, 0.3)
        elapsed = time.monotonic() - began
        assert stuck_thread.is_alive()
    finally:
        release.set()
    assert stuck_thread.name in late
    assert 0.3 <= elapsed < 2  # returned at the deadline, not when the handler did
    await asyncio.to_thread(stuck_thread.join, 5)
    assert not stuck_thread.is_alive()
    assert [name for name, _ in record.stops] == ["stuck"]  # its stop ran once released


async def test_stop_while_the_root_is_busy_still_ends_the_root_once_it_is_free(
    start_system: StartSystem,
) -> None:
    before = set(threading.enumerate())
    record = Record()
    restarting, gate = threading.Event(), threading.Event()
    starts: list[Supervision] = []

    def slow_to_restart(supervision: Supervision) -> pykka.ActorRef[Any]:
        starts.append(supervision)
        if len(starts) > 1:  # a restart: keeps the root busy until the test opens the gate
            restarting.set()
            if not gate.wait(10):
                raise TimeoutError("the test never opened the gate")
        return Worker.start(supervision, record)

    system = await start_system([ChildSpec("slow", slow_to_restart)])
    slow = await started(system, "slow")
    try:
        tell(slow.ref, Crash("make the root restart me"))
        await signalled(restarting, "the root is busy restarting slow")
        late = await asyncio.to_thread(system.stop, 0.3)
        assert any(name.startswith("Supervisor-") for name in late)  # the busy root
    finally:
        gate.set()
    await eventually(lambda: not system_threads(before), "every actor thread ended", timeout=3)
