"""The loop bridge: the event loop never blocks on an actor, and every outcome reaches the caller.

Proven here (DESIGN.md §3, rules 1 and 2):

- ``ask`` returns the reply, keeps many concurrent asks apart, and raises the handler's
  exception in the awaiting coroutine while the actor lives on; asking or telling a dead
  actor raises ``ActorUnavailable``;
- a timed-out ``ask`` raises ``TimeoutError``, and its late reply (value or exception)
  causes no loop error and no warning;
- ``wait`` completes with a ``LoopFuture`` finished before or after it is awaited, by several
  awaiters on one or two loops, times out on one never finished, and refuses plain pykka
  futures (and so ``ask`` refuses actors that are not ``SupervisedActor``s);
- a ``LoopFuture`` handed out as a receipt completes the awaiting coroutine later;
- ``run_on_loop`` from an actor thread returns the coroutine's result (computed on the loop
  thread), raises its exception, times out and cancels it, and refuses the loop's own thread
  without leaving an un-awaited coroutine behind;
- the key invariant: while an actor's handler blocks its thread for a second, a 5 ms ticker on
  the loop never misses a beat; the controls — ``.get()`` on the pykka future, or awaiting it —
  freeze the ticker for that whole second, so the measurement can fail.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import threading
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import pykka
import pytest

from exobrain.supervision import (
    ActorUnavailable,
    LoopFuture,
    SupervisedActor,
    Supervision,
    ThreadTracker,
    ask,
    run_on_loop,
    tell,
    wait,
)

from .support import signalled

T = TypeVar("T")


# --- messages and the test actor -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fail:
    """Raise ``ValueError(text)`` in the handler."""

    text: str


@dataclass(frozen=True, slots=True)
class Work:
    """Keep the actor's thread busy for ``seconds`` (synchronous work), then reply its name."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Hold:
    """Signal ``entered``, block until ``release``, then reply ``reply`` (or raise it)."""

    entered: threading.Event
    release: threading.Event
    reply: object


@dataclass(frozen=True, slots=True)
class Remember:
    item: str


@dataclass(frozen=True, slots=True)
class Recall:
    pass


@dataclass(frozen=True, slots=True)
class Promise:
    """Reply with a receipt (a ``LoopFuture``) that a later ``Fulfil`` completes."""

    key: str


@dataclass(frozen=True, slots=True)
class Fulfil:
    key: str
    outcome: object


@dataclass(frozen=True, slots=True)
class OnLoop:
    """Run ``make()`` on ``loop`` with ``run_on_loop``; reply (actor thread id, result or error)."""

    loop: asyncio.AbstractEventLoop
    make: Callable[[], Coroutine[Any, Any, object]]
    timeout: float


class Echo(SupervisedActor):
    """Replies ``("echo", message)`` to anything it does not know."""

    def __init__(self, supervision: Supervision) -> None:
        super().__init__(supervision)
        self.seen: list[str] = []
        self.promises: dict[str, LoopFuture[object]] = {}

    def on_receive(self, message: Any) -> Any:
        reply: object = None
        match message:
            case Fail(text=text):
                raise ValueError(text)
            case Work(seconds=seconds):
                time.sleep(seconds)  # the handler's own work, holding its thread
                reply = threading.current_thread().name
            case Hold():
                reply = self.hold(message)
            case Remember(item=item):
                self.seen.append(item)
            case Recall():
                reply = list(self.seen)
            case Promise(key=key):
                reply = self.promises[key] = LoopFuture()
            case Fulfil(key=key, outcome=outcome):
                receipt = self.promises.pop(key)
                if isinstance(outcome, BaseException):
                    receipt.set_exception((type(outcome), outcome, None))
                else:
                    receipt.set(outcome)
            case OnLoop():
                reply = self.on_loop(message)
            case _:
                reply = ("echo", message)
        return reply

    @staticmethod
    def hold(message: Hold) -> object:
        message.entered.set()
        if not message.release.wait(10):
            raise TimeoutError("the test never released the actor")
        if isinstance(message.reply, BaseException):
            raise message.reply
        return message.reply

    @staticmethod
    def on_loop(message: OnLoop) -> tuple[int, object]:
        try:
            outcome: object = run_on_loop(message.loop, message.make(), timeout=message.timeout)
        except Exception as exc:
            outcome = exc
        return threading.get_ident(), outcome


class Plain(pykka.ThreadingActor):
    """A pykka actor that is not a SupervisedActor: its replies are plain ThreadingFutures."""

    def on_receive(self, message: Any) -> Any:
        return message


@pytest.fixture
def echo() -> pykka.ActorRef[Echo]:
    return Echo.start(Supervision("echo", None, ThreadTracker()))


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Everything the running loop reports to its exception handler during the test."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield errors
    loop.set_exception_handler(previous)


# --- ask and tell ----------------------------------------------------------------------------


async def test_ask_returns_the_reply(echo: pykka.ActorRef[Echo]) -> None:
    assert await ask(echo, "hello", timeout=5) == ("echo", "hello")


async def test_concurrent_asks_each_get_their_own_reply(echo: pykka.ActorRef[Echo]) -> None:
    replies = await asyncio.gather(*(ask(echo, n, timeout=5) for n in range(200)))
    assert replies == [("echo", n) for n in range(200)]


async def test_tells_are_delivered_in_order_before_a_later_ask(
    echo: pykka.ActorRef[Echo],
) -> None:
    for item in ("a", "b", "c"):
        tell(echo, Remember(item))
    assert await ask(echo, Recall(), timeout=5) == ["a", "b", "c"]


async def test_exception_in_an_ask_reaches_the_caller_and_the_actor_lives_on(
    echo: pykka.ActorRef[Echo],
) -> None:
    with pytest.raises(ValueError, match="bad input"):
        await ask(echo, Fail("bad input"), timeout=5)
    assert echo.is_alive()
    assert await ask(echo, "still here", timeout=5) == ("echo", "still here")


async def test_ask_to_a_stopped_actor_raises_actor_unavailable(
    echo: pykka.ActorRef[Echo],
) -> None:
    echo.stop(timeout=5)
    with pytest.raises(ActorUnavailable, match="Echo is not running") as raised:
        await ask(echo, "anyone?", timeout=5)
    assert isinstance(raised.value.__cause__, pykka.ActorDeadError)


async def test_ask_to_a_stopped_actor_fails_at_once_rather_than_timing_out(
    echo: pykka.ActorRef[Echo],
) -> None:
    """A dead actor's ask fails immediately rather than waiting out its timeout."""
    echo.stop(timeout=5)
    started = time.monotonic()
    with pytest.raises(ActorUnavailable):
        await ask(echo, "anyone?", timeout=5)
    assert time.monotonic() - started < 1


async def test_tell_to_a_stopped_actor_raises_actor_unavailable(
    echo: pykka.ActorRef[Echo],
) -> None:
    echo.stop(timeout=5)
    with pytest.raises(ActorUnavailable, match="Echo is not running") as raised:
        tell(echo, Remember("lost"))
    assert isinstance(raised.value.__cause__, pykka.ActorDeadError)


@pytest.mark.parametrize("late", ["late value", LookupError("late failure")], ids=repr)
async def test_timed_out_ask_raises_and_its_late_reply_is_harmless(
    echo: pykka.ActorRef[Echo], loop_errors: list[dict[str, Any]], late: object
) -> None:
    entered, release = threading.Event(), threading.Event()
    try:
        with pytest.raises(TimeoutError):
            await ask(echo, Hold(entered, release, late), timeout=0.05)
        await signalled(entered, "the actor holds the timed-out ask")
    finally:
        release.set()
    # The actor answers in order and the loop runs callbacks in order, so by the time this
    # reply arrives the late one has been delivered to the abandoned waiter.
    assert await ask(echo, "next", timeout=5) == ("echo", "next")
    gc.collect()  # an unretrieved exception would be reported when its future is collected
    await asyncio.sleep(0)
    assert loop_errors == []


# --- wait and LoopFuture ---------------------------------------------------------------------


async def test_wait_on_a_future_completed_before_it_is_awaited(
    echo: pykka.ActorRef[Echo],
) -> None:
    future = echo.ask("early", block=False)
    assert isinstance(future, LoopFuture)
    await asyncio.to_thread(future.get, timeout=5)  # completed, off the loop, before wait()
    assert await wait(future, timeout=1) == ("echo", "early")
    assert await wait(future, timeout=1) == ("echo", "early")  # and again


async def test_wait_on_a_failed_future_completed_before_it_is_awaited() -> None:
    future: LoopFuture[int] = LoopFuture()
    try:
        raise KeyError("gone")
    except KeyError:
        future.set_exception()
    with pytest.raises(KeyError, match="gone"):
        await wait(future, timeout=1)


async def test_several_awaiters_on_two_loops_all_get_the_value() -> None:
    future: LoopFuture[int] = LoopFuture()
    here = [asyncio.create_task(wait(future, timeout=5)) for _ in range(3)]
    registered = threading.Event()

    async def elsewhere() -> int:
        waiting = asyncio.create_task(wait(future, timeout=5))
        await asyncio.sleep(0)  # the task is now waiting on the future
        registered.set()
        return await waiting

    other_loop = asyncio.create_task(asyncio.to_thread(asyncio.run, elsewhere()))
    await signalled(registered, "the other loop awaits the future")
    await asyncio.sleep(0)  # ours are waiting too
    threading.Thread(target=future.set, args=(6 * 7,)).start()
    assert await asyncio.gather(*here) == [42, 42, 42]
    assert await other_loop == 42


async def test_wait_times_out_on_a_future_never_completed() -> None:
    future: LoopFuture[int] = LoopFuture()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await wait(future, timeout=0.05)
    assert time.monotonic() - started < 1


async def test_cancelled_wait_ignores_a_later_completion(
    loop_errors: list[dict[str, Any]],
) -> None:
    future: LoopFuture[int] = LoopFuture()
    waiting = asyncio.create_task(wait(future, timeout=5))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    try:
        raise RuntimeError("after the caller left")
    except RuntimeError:
        future.set_exception()
    await asyncio.sleep(0)  # the abandoned waiter's callback runs
    with pytest.raises(RuntimeError, match="after the caller left"):
        await wait(future, timeout=1)
    gc.collect()
    await asyncio.sleep(0)
    assert loop_errors == []


async def test_wait_refuses_a_plain_pykka_future() -> None:
    future: pykka.ThreadingFuture[int] = pykka.ThreadingFuture()
    future.set(1)
    with pytest.raises(TypeError, match="only LoopFutures"):
        await wait(future, timeout=1)


async def test_ask_refuses_an_actor_that_does_not_answer_with_loop_futures() -> None:
    plain = Plain.start()
    with pytest.raises(TypeError, match="only LoopFutures"):
        await ask(plain, "hi", timeout=1)


async def test_a_receipt_completes_the_awaiting_coroutine_later(
    echo: pykka.ActorRef[Echo],
) -> None:
    receipt = await ask(echo, Promise("commit"), timeout=5)
    assert isinstance(receipt, LoopFuture)
    waiting = asyncio.create_task(wait(receipt, timeout=5))
    await asyncio.sleep(0)
    assert not waiting.done()
    tell(echo, Fulfil("commit", ("stored", 3)))
    assert await waiting == ("stored", 3)


async def test_a_failed_receipt_raises_in_the_awaiting_coroutine(
    echo: pykka.ActorRef[Echo],
) -> None:
    receipt = await ask(echo, Promise("commit"), timeout=5)
    tell(echo, Fulfil("commit", ConnectionError("database went away")))
    with pytest.raises(ConnectionError, match="database went away"):
        await wait(receipt, timeout=5)


def test_derived_loop_futures_are_refused() -> None:
    """pykka's lazy combinators would never wake a loop waiter: they refuse, loudly."""
    source: LoopFuture[int] = LoopFuture()
    with pytest.raises(TypeError, match="combine them with asyncio"):
        source.map(lambda value: value + 1)
    with pytest.raises(TypeError, match="combine them with asyncio"):
        source.join(LoopFuture())


# --- run_on_loop -----------------------------------------------------------------------------


async def test_run_on_loop_from_an_actor_returns_the_coroutines_result(
    echo: pykka.ActorRef[Echo],
) -> None:
    loop = asyncio.get_running_loop()

    async def compute() -> tuple[int, int]:
        await asyncio.sleep(0)
        return threading.get_ident(), 6 * 7

    actor_thread, outcome = await ask(echo, OnLoop(loop, compute, timeout=5), timeout=5)
    assert outcome == (threading.get_ident(), 42)  # computed on the loop's thread
    assert actor_thread != threading.get_ident()  # and asked for from the actor's


async def test_run_on_loop_raises_the_coroutines_exception_in_the_actor(
    echo: pykka.ActorRef[Echo],
) -> None:
    loop = asyncio.get_running_loop()

    async def broken() -> None:
        await asyncio.sleep(0)
        raise LookupError("no such row")

    _, outcome = await ask(echo, OnLoop(loop, broken, timeout=5), timeout=5)
    assert isinstance(outcome, LookupError)
    assert outcome.args == ("no such row",)


async def test_run_on_loop_times_out_and_cancels_the_coroutine(
    echo: pykka.ActorRef[Echo],
) -> None:
    loop = asyncio.get_running_loop()
    never, cancelled = asyncio.Event(), asyncio.Event()

    async def stuck() -> None:
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    _, outcome = await ask(echo, OnLoop(loop, stuck, timeout=0.05), timeout=5)
    assert isinstance(outcome, TimeoutError)
    await asyncio.wait_for(cancelled.wait(), 5)


async def answer() -> int:
    return 42


async def test_run_on_loop_on_the_loop_thread_refuses_and_closes_the_coroutine() -> None:
    coroutine = answer()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match="loop's own thread"):
            run_on_loop(asyncio.get_running_loop(), coroutine, timeout=1)
        assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CLOSED
        del coroutine
        gc.collect()
    assert [str(w.message) for w in caught] == []


def test_run_on_loop_with_a_closed_loop_closes_the_coroutine() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    coroutine = answer()
    try:
        with pytest.raises(RuntimeError, match="closed"):
            run_on_loop(loop, coroutine, timeout=1)
        assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CLOSED
    finally:
        coroutine.close()  # keep the leak from warning in whichever test collects it


# --- the loop never blocks -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ticks:
    result: object
    elapsed: float
    longest_gap: float


async def while_ticking(during: Callable[[], Awaitable[T]]) -> Ticks:
    """Await ``during()`` while a ticker on the loop ticks every 5 ms; measure its longest gap."""
    gaps: list[float] = []
    ticked, done = asyncio.Event(), asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
            ticked.set()

    task = asyncio.create_task(ticker())
    await ticked.wait()
    started = time.monotonic()
    result = await during()
    elapsed = time.monotonic() - started
    ticked.clear()
    await ticked.wait()  # one tick after: a freeze that lasted to the end is measured too
    done.set()
    await task
    return Ticks(result, elapsed, max(gaps))


async def test_the_loop_keeps_running_while_an_asked_actor_blocks_its_thread(
    echo: pykka.ActorRef[Echo],
) -> None:
    ticks = await while_ticking(lambda: ask(echo, Work(1.0), timeout=5))
    assert isinstance(ticks.result, str)
    assert ticks.result.startswith("Echo-")  # the work ran on the actor's thread
    assert ticks.elapsed >= 0.95  # the handler really held its thread for a second
    assert ticks.longest_gap < 0.2


async def test_control_blocking_get_on_the_loop_freezes_it(echo: pykka.ActorRef[Echo]) -> None:
    async def blocking_get() -> object:
        return echo.ask(Work(1.0), block=False).get(timeout=5)

    ticks = await while_ticking(blocking_get)
    assert ticks.longest_gap >= 0.9


async def test_control_awaiting_a_pykka_future_freezes_the_loop(
    echo: pykka.ActorRef[Echo],
) -> None:
    async def awaiting_the_pykka_future() -> object:
        return await echo.ask(Work(1.0), block=False)

    ticks = await while_ticking(awaiting_the_pykka_future)
    assert ticks.longest_gap >= 0.9
