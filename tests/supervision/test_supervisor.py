"""The one-for-one supervisor: restart policies, intensity, backoff, escalation and the snapshot.

Proven here (DESIGN.md §4):

- a child that raises in a ``tell`` is restarted behind the same ``ChildHandle`` (new actor
  URN) and serves asks again; so is one whose ``started()`` raises, or whose start callable
  raises; the snapshot counts the restarts and keeps the last failure;
- policies: ``permanent`` always restarts, ``transient`` only after a failure, ``temporary``
  never — for both a crash and a normal stop;
- backoff doubles up to its cap; failures spread wider than ``window`` never escalate, the
  same failures within it do;
- more than ``max_restarts`` failures within ``window`` escalate: the child is ``failed``, its
  handle raises ``ActorUnavailable``, ``system.failures`` and ``check()`` name ``root/<child>``,
  ``on_fatal`` runs exactly once (on the root's thread), and its siblings keep running;
- asks while a child waits out its backoff fail fast with ``ActorUnavailable``, and stopping
  the system cancels that pending restart; asks already queued in a crashing child's mailbox
  fail with an error instead of hanging;
- a nested supervisor that escalates is restarted by the root with a whole fresh subtree, and
  when it keeps escalating the root escalates ``root/<nested>``;
- the snapshot's shape: root and children, mailbox depth, restarts, uptime, last failure, and
  a nested supervisor's own children;
- a supervisor that dies does not leave its children running unsupervised.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pykka
import pytest

from exobrain.supervision import (
    ActorUnavailable,
    ChildHandle,
    ChildSpec,
    Intensity,
    RestartPolicy,
    SupervisedActor,
    Supervision,
    Supervisor,
    ask,
    fatal_event,
    tell,
    wait,
)

from .support import FAST, StartSystem, answering, eventually, signalled, started

# --- messages and the test actor -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Crash:
    """Raise ``RuntimeError(text)``: told, it kills the actor."""

    text: str


@dataclass(frozen=True, slots=True)
class Hold:
    """Signal ``entered``, block until ``release``, then crash with ``crash`` if given."""

    entered: threading.Event
    release: threading.Event
    crash: str | None = None


@dataclass(frozen=True, slots=True)
class StopNormally:
    pass


@dataclass(frozen=True, slots=True)
class Identify:
    """Reply with this incarnation's actor URN."""


@dataclass(frozen=True, slots=True)
class Work:
    """Keep the actor's thread busy for ``seconds`` (synchronous work)."""

    seconds: float


@dataclass
class Plan:
    """Shared by every incarnation of one child: its start attempts, the first few failing."""

    failing_starts: int = 0
    starts: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        with self.lock:
            self.starts.append(time.monotonic())
            attempt = len(self.starts)
        if attempt <= self.failing_starts:
            raise RuntimeError(f"start {attempt} failed")

    @property
    def attempts(self) -> int:
        with self.lock:
            return len(self.starts)


class Worker(SupervisedActor):
    """Replies ``("worker", message)``; crashes, blocks or stops on command."""

    def __init__(self, supervision: Supervision, plan: Plan | None = None) -> None:
        super().__init__(supervision)
        self.plan = plan

    def started(self) -> None:
        if self.plan is not None:
            self.plan.start()

    def on_receive(self, message: Any) -> Any:
        match message:
            case Crash(text=text):
                raise RuntimeError(text)
            case Hold(entered=entered, release=release, crash=crash):
                entered.set()
                if not release.wait(10):
                    raise TimeoutError("the test never released the worker")
                if crash is not None:
                    raise RuntimeError(crash)
                return "released"
            case StopNormally():
                self.stop()
                return None
            case Identify():
                return self.actor_urn
            case Work(seconds=seconds):
                time.sleep(seconds)  # the handler's own work, holding its thread
                return "worked"
            case _:
                return ("worker", message)


def worker(name: str, restart: RestartPolicy = "permanent", plan: Plan | None = None) -> ChildSpec:
    return ChildSpec(name, lambda supervision: Worker.start(supervision, plan), restart)


def nested(
    name: str,
    children: list[ChildSpec],
    handles: dict[str, ChildHandle],
    intensity: Intensity,
) -> ChildSpec:
    """A child that is itself a Supervisor over ``children``, reached through ``handles``."""
    return ChildSpec(
        name,
        lambda supervision: Supervisor.start(
            supervision, children, handles=handles, intensity=intensity
        ),
    )


def handles_for(*names: str) -> dict[str, ChildHandle]:
    closing = threading.Event()
    return {name: ChildHandle(name, closing) for name in names}


async def restarted(handle: ChildHandle, old_urn: str) -> str:
    """Wait until a new incarnation answers behind ``handle``; return its URN."""
    return await answering(handle, not_urn=old_urn)


def child_entry(snapshot: dict[str, Any], name: str) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [
        child for child in snapshot["children"] if child["name"] == name
    ]
    [entry] = entries
    return entry


class Fatal:
    """An ``on_fatal`` callback that counts its calls and remembers their threads."""

    def __init__(self) -> None:
        self.threads: list[str] = []
        self.called = threading.Event()

    def __call__(self) -> None:
        self.threads.append(threading.current_thread().name)
        self.called.set()


# --- restarts --------------------------------------------------------------------------------


async def test_child_that_raises_in_a_tell_is_restarted_behind_the_same_handle(
    start_system: StartSystem,
) -> None:
    system = await start_system([worker("w")])
    handle = await started(system, "w")
    first_ref = handle.ref
    first = await ask(first_ref, Identify(), timeout=5)
    assert first == handle.urn

    tell(first_ref, Crash("boom"))
    second = await restarted(handle, first)

    assert not first_ref.is_alive()
    assert await ask(system.handle("w").ref, Identify(), timeout=5) == second != first
    assert await ask(handle.ref, "ping", timeout=5) == ("worker", "ping")
    entry = child_entry(await system.snapshot(), "w")
    assert (entry["state"], entry["restarts"]) == ("running", 1)
    assert entry["last_failure"]["kind"] == "RuntimeError"
    assert entry["last_failure"]["message"] == "boom"


async def test_restart_count_grows_with_each_restart(start_system: StartSystem) -> None:
    system = await start_system(
        [worker("w")],
        intensity=Intensity(max_restarts=5, window=10, backoff_initial=0.01, backoff_max=0.02),
    )
    handle = await started(system, "w")
    for crash in range(1, 4):
        urn = handle.urn
        assert urn is not None
        tell(handle.ref, Crash(f"crash {crash}"))
        await restarted(handle, urn)
        entry = child_entry(await system.snapshot(), "w")
        assert entry["restarts"] == crash
        assert entry["last_failure"]["message"] == f"crash {crash}"


async def test_child_whose_started_raises_is_restarted(start_system: StartSystem) -> None:
    plan = Plan(failing_starts=1)
    system = await start_system([worker("w", plan=plan)])
    handle = await started(system, "w")
    assert plan.attempts == 2
    assert await ask(handle.ref, "ping", timeout=5) == ("worker", "ping")
    entry = child_entry(await system.snapshot(), "w")
    assert entry["restarts"] == 1
    assert entry["last_failure"]["kind"] == "RuntimeError"
    assert entry["last_failure"]["message"] == "start 1 failed"


async def test_child_whose_start_callable_raises_is_restarted(
    start_system: StartSystem,
) -> None:
    calls: list[int] = []

    def start(supervision: Supervision) -> pykka.ActorRef[Any]:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("no socket yet")
        return Worker.start(supervision)

    system = await start_system([ChildSpec("w", start)])
    handle = await started(system, "w")
    assert len(calls) == 2
    assert await ask(handle.ref, "ping", timeout=5) == ("worker", "ping")
    entry = child_entry(await system.snapshot(), "w")
    assert entry["restarts"] == 1
    assert entry["last_failure"]["kind"] == "OSError"
    assert entry["last_failure"]["message"] == "no socket yet"


@pytest.mark.parametrize(
    ("policy", "ending", "restarts", "final_state"),
    [
        ("permanent", "crash", True, "running"),
        ("permanent", "normal", True, "running"),
        ("transient", "crash", True, "running"),
        ("transient", "normal", False, "stopped"),
        ("temporary", "crash", False, "failed"),
        ("temporary", "normal", False, "stopped"),
    ],
)
async def test_restart_policies(
    start_system: StartSystem, policy: RestartPolicy, ending: str, restarts: bool, final_state: str
) -> None:
    plan = Plan()
    system = await start_system([worker("w", policy, plan)])
    handle = await started(system, "w")
    first = handle.urn
    assert first is not None
    tell(handle.ref, Crash("it broke") if ending == "crash" else StopNormally())

    if restarts:
        await restarted(handle, first)
        assert await ask(handle.ref, "ping", timeout=5) == ("worker", "ping")
    else:
        await eventually(lambda: handle.state == final_state, f"w is {final_state}")
        with pytest.raises(ActorUnavailable, match=f"w is {final_state}"):
            _ = handle.ref
    entry = child_entry(await system.snapshot(), "w")
    assert entry["state"] == final_state
    assert entry["restarts"] == (1 if restarts else 0)
    assert plan.attempts == (2 if restarts else 1)
    assert (entry["last_failure"] is None) == (ending == "normal")
    assert system.failures == {}


# --- intensity and backoff -------------------------------------------------------------------


def test_backoff_doubles_from_its_initial_value_up_to_its_cap() -> None:
    intensity = Intensity(backoff_initial=0.1, backoff_max=0.5)
    delays = [intensity.backoff(attempt) for attempt in range(1, 7)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5, 0.5])
    assert intensity.backoff(0) == pytest.approx(0.1)


async def test_restarts_wait_out_a_growing_backoff(start_system: StartSystem) -> None:
    intensity = Intensity(max_restarts=5, window=10, backoff_initial=0.04, backoff_max=0.1)
    plan = Plan(failing_starts=3)
    system = await start_system([worker("w", plan=plan)], intensity=intensity)
    await started(system, "w")
    gaps = [later - earlier for earlier, later in zip(plan.starts, plan.starts[1:], strict=False)]
    assert len(gaps) == 3
    for attempt, gap in enumerate(gaps, start=1):
        assert gap >= intensity.backoff(attempt), (attempt, gaps)
    assert child_entry(await system.snapshot(), "w")["restarts"] == 3


@pytest.mark.parametrize(("window", "escalates"), [(0.02, False), (10.0, True)])
async def test_only_failures_within_the_window_count_towards_escalation(
    start_system: StartSystem, window: float, escalates: bool
) -> None:
    # Each restart waits 50 ms, longer than the short window: failures never accumulate there.
    intensity = Intensity(max_restarts=1, window=window, backoff_initial=0.05, backoff_max=0.05)
    plan = Plan(failing_starts=3)
    fatal = Fatal()
    system = await start_system([worker("w", plan=plan)], intensity=intensity, on_fatal=fatal)
    handle = system.handle("w")
    await eventually(
        lambda: handle.state == "failed" or (plan.attempts == 4 and handle.state == "running"),
        "w failed for good or started after its three failures",
    )
    await system.snapshot()  # the root has finished with it (escalation comes after the state)
    assert handle.state == ("failed" if escalates else "running")
    assert list(system.failures) == (["root/w"] if escalates else [])
    assert len(fatal.threads) == (1 if escalates else 0)
    assert plan.attempts == (2 if escalates else 4)


async def test_too_many_failures_escalate(start_system: StartSystem) -> None:
    loop = asyncio.get_running_loop()
    fatal_set = asyncio.Event()
    fire = fatal_event(loop, fatal_set)
    fatal = Fatal()

    def on_fatal() -> None:
        fatal()
        fire()

    plan = Plan(failing_starts=1000)
    system = await start_system(
        [worker("healthy"), worker("crashy", plan=plan)], intensity=FAST, on_fatal=on_fatal
    )
    healthy = await started(system, "healthy")
    healthy_urn = healthy.urn
    await asyncio.wait_for(fatal_set.wait(), 5)

    crashy = system.handle("crashy")
    assert crashy.state == "failed"
    with pytest.raises(ActorUnavailable, match="crashy is failed"):
        _ = crashy.ref
    assert list(system.failures) == ["root/crashy"]
    failure = system.failures["root/crashy"]
    assert (failure.kind, failure.message) == ("RuntimeError", "start 3 failed")
    with pytest.raises(RuntimeError, match=r"root/crashy \(RuntimeError: start 3 failed\)"):
        await system.check()

    snapshot = await system.snapshot()  # the root has handled everything sent to it so far
    assert snapshot["state"] == "failed"
    assert "root/crashy" in snapshot["failure"]
    entry = child_entry(snapshot, "crashy")
    assert (entry["state"], entry["restarts"]) == ("failed", FAST.max_restarts)
    assert entry["last_failure"]["message"] == "start 3 failed"
    assert plan.attempts == FAST.max_restarts + 1
    assert len(fatal.threads) == 1
    assert fatal.threads[0].startswith("Supervisor-")  # called on the root's thread

    # One-for-one: the sibling never noticed.
    assert healthy.urn == healthy_urn
    assert await ask(healthy.ref, "still fine?", timeout=5) == ("worker", "still fine?")
    assert child_entry(snapshot, "healthy")["restarts"] == 0


async def test_a_healthy_system_passes_its_check(start_system: StartSystem) -> None:
    plan = Plan(failing_starts=1)  # one restart is not a failure of the system
    system = await start_system([worker("w", plan=plan)])
    await started(system, "w")
    await system.check()
    assert system.failures == {}
    assert (await system.snapshot())["failure"] is None


# --- callers during and around a crash -------------------------------------------------------


async def test_asks_while_a_child_waits_to_restart_fail_fast(start_system: StartSystem) -> None:
    timers_before = set(threading.enumerate())
    slow = Intensity(max_restarts=5, window=60, backoff_initial=30, backoff_max=30)
    plan = Plan()
    system = await start_system([worker("w", plan=plan)], intensity=slow)
    handle = await started(system, "w")
    tell(handle.ref, Crash("down for a while"))
    await eventually(lambda: handle.state == "restarting", "w is restarting")

    async def call() -> object:
        return await ask(handle.ref, "are you there?", timeout=30)

    started_at = time.monotonic()
    with pytest.raises(ActorUnavailable, match="w is restarting"):
        await asyncio.wait_for(call(), 1)
    assert time.monotonic() - started_at < 0.5
    entry = child_entry(await system.snapshot(), "w")
    assert (entry["state"], entry["restarts"], entry["mailbox"], entry["uptime_s"]) == (
        "restarting",
        0,
        0,
        0.0,
    )

    def pending_timers() -> list[threading.Thread]:
        return [
            thread
            for thread in threading.enumerate()
            if isinstance(thread, threading.Timer) and thread not in timers_before
        ]

    # Stopping the system cancels the pending restart: its timer ends now, not in 30 s.
    assert len(pending_timers()) == 1
    assert await asyncio.to_thread(system.stop, 5) == []
    await eventually(lambda: not pending_timers(), "the restart timer was cancelled")
    assert plan.attempts == 1


async def test_asks_queued_in_a_crashing_childs_mailbox_fail_instead_of_hanging(
    start_system: StartSystem,
) -> None:
    system = await start_system([worker("w")])
    handle = await started(system, "w")
    ref = handle.ref
    entered, release = threading.Event(), threading.Event()
    try:
        tell(ref, Hold(entered, release, crash="crashed with a full mailbox"))
        await signalled(entered, "w is busy")
        queued = [ref.ask(("job", n), block=False) for n in range(5)]
        queued_by_bridge = [
            asyncio.create_task(ask(ref, ("bridge", n), timeout=5)) for n in range(5)
        ]
        await asyncio.sleep(0)  # the bridge's asks are in the mailbox too
    finally:
        release.set()
    outcomes = await asyncio.gather(
        *(wait(future, timeout=5) for future in queued), *queued_by_bridge, return_exceptions=True
    )
    assert len(outcomes) == 10
    for outcome in outcomes:
        assert isinstance(outcome, (pykka.ActorDeadError, ActorUnavailable)), outcome
    await restarted(handle, ref.actor_urn)
    assert await ask(handle.ref, "fresh", timeout=5) == ("worker", "fresh")


# --- nested supervisors ----------------------------------------------------------------------


async def test_nested_supervisor_that_escalates_is_restarted_with_a_fresh_subtree(
    start_system: StartSystem,
) -> None:
    leaf_handles = handles_for("leaf")
    leaf = leaf_handles["leaf"]
    inner_intensity = Intensity(max_restarts=1, window=10, backoff_initial=0.01, backoff_max=0.01)
    fatal = Fatal()
    system = await start_system(
        [nested("inner", [worker("leaf")], leaf_handles, inner_intensity)], on_fatal=fatal
    )
    inner = await started(system, "inner")
    first_inner_ref = inner.ref
    first_leaf = await answering(leaf)
    tell(leaf.ref, Crash("first crash"))
    second_leaf = await restarted(leaf, first_leaf)
    assert inner.urn == first_inner_ref.actor_urn  # the inner supervisor coped alone

    tell(leaf.ref, Crash("second crash"))  # beyond the inner intensity: it escalates
    await restarted(inner, first_inner_ref.actor_urn)
    third_leaf = await answering(leaf, not_urn=second_leaf)  # under the new inner supervisor
    assert third_leaf != first_leaf

    assert not first_inner_ref.is_alive()
    assert await ask(leaf.ref, "ping", timeout=5) == ("worker", "ping")
    snapshot = await system.snapshot()
    entry = child_entry(snapshot, "inner")
    assert (entry["class"], entry["state"], entry["restarts"]) == ("Supervisor", "running", 1)
    assert entry["last_failure"]["kind"] == "SubtreeFailed"
    assert entry["last_failure"]["message"] == "inner/leaf: RuntimeError: second crash"
    [leaf_entry] = entry["children"]
    assert (leaf_entry["name"], leaf_entry["state"]) == ("leaf", "running")
    assert (leaf_entry["restarts"], leaf_entry["last_failure"]) == (0, None)  # a fresh record
    assert system.failures == {}
    assert fatal.threads == []
    await system.check()


async def test_nested_supervisor_that_keeps_escalating_escalates_at_the_root(
    start_system: StartSystem,
) -> None:
    leaf_handles = handles_for("leaf")
    plan = Plan(failing_starts=1000)
    give_up_at_once = Intensity(max_restarts=0, window=10, backoff_initial=0.01, backoff_max=0.01)
    fatal = Fatal()
    system = await start_system(
        [nested("inner", [worker("leaf", plan=plan)], leaf_handles, give_up_at_once)],
        intensity=Intensity(max_restarts=1, window=10, backoff_initial=0.01, backoff_max=0.01),
        on_fatal=fatal,
    )
    await signalled(fatal.called, "the root escalated")
    await system.snapshot()
    assert list(system.failures) == ["root/inner"]
    assert system.failures["root/inner"].kind == "SubtreeFailed"
    assert "inner/leaf" in system.failures["root/inner"].message
    with pytest.raises(RuntimeError, match="root/inner"):
        await system.check()
    assert system.handle("inner").state == "failed"
    assert plan.attempts == 2  # one leaf start per inner incarnation
    assert len(fatal.threads) == 1


# --- the snapshot ----------------------------------------------------------------------------


async def test_snapshot_shape(start_system: StartSystem) -> None:
    before = datetime.now(UTC)
    leaf_handles = handles_for("leaf")
    system = await start_system(
        [
            worker("w", plan=Plan(failing_starts=1)),
            nested("inner", [worker("leaf")], leaf_handles, FAST),
        ]
    )
    w = await started(system, "w")
    await started(system, "inner")
    await answering(leaf_handles["leaf"])
    after = datetime.now(UTC)

    entered, release = threading.Event(), threading.Event()
    try:
        tell(w.ref, Hold(entered, release))
        await signalled(entered, "w is busy")
        for n in range(3):
            tell(w.ref, ("queued", n))
        first = await system.snapshot()
        await ask(leaf_handles["leaf"].ref, Work(0.05), timeout=5)  # time passes
        second = await system.snapshot()
    finally:
        release.set()

    json.dumps(first)  # what /api/ops/actors serves
    assert set(first) == {"name", "class", "state", "mailbox", "uptime_s", "failure", "children"}
    assert (first["name"], first["class"], first["state"], first["failure"]) == (
        "root",
        "Supervisor",
        "running",
        None,
    )
    assert first["mailbox"] == 0
    assert [child["name"] for child in first["children"]] == ["w", "inner"]

    entry = child_entry(first, "w")
    assert set(entry) == {
        "name",
        "class",
        "state",
        "restart",
        "mailbox",
        "restarts",
        "uptime_s",
        "last_failure",
    }
    assert (entry["class"], entry["state"], entry["restart"]) == ("Worker", "running", "permanent")
    assert (entry["mailbox"], entry["restarts"]) == (3, 1)
    failure = entry["last_failure"]
    assert set(failure) == {"at", "kind", "message"}
    assert (failure["kind"], failure["message"]) == ("RuntimeError", "start 1 failed")
    assert before <= datetime.fromisoformat(failure["at"]) <= after

    inner = child_entry(first, "inner")
    assert (inner["class"], inner["state"], inner["restarts"]) == ("Supervisor", "running", 0)
    [leaf] = inner["children"]
    assert (leaf["name"], leaf["class"], leaf["state"]) == ("leaf", "Worker", "running")
    assert (leaf["restarts"], leaf["last_failure"], leaf["mailbox"]) == (0, None, 0)

    # Uptimes: children started after the root, and all of them keep counting.
    for snapshot in (first, second):
        for child in snapshot["children"]:
            assert 0 <= child["uptime_s"] <= snapshot["uptime_s"]
    assert second["uptime_s"] - first["uptime_s"] >= 0.04
    assert child_entry(second, "w")["uptime_s"] - entry["uptime_s"] >= 0.04
    assert child_entry(second, "inner")["children"][0]["uptime_s"] > leaf["uptime_s"]


# --- a dying supervisor ----------------------------------------------------------------------


async def test_a_failing_escalation_callback_leaves_no_orphaned_children(
    start_system: StartSystem,
) -> None:
    def on_fatal() -> None:
        raise RuntimeError("the fatal hook broke (e.g. its loop is closed)")

    system = await start_system(
        [worker("healthy"), worker("crashy", plan=Plan(failing_starts=1000))], on_fatal=on_fatal
    )
    await started(system, "healthy")
    await eventually(lambda: "root/crashy" in system.failures, "crashy escalated")
    assert await asyncio.to_thread(system.stop, 1) == []
