"""The one crossing between the event loop and actor threads (DESIGN.md §3).

Loop → actor: :func:`ask` sends a pykka ask and awaits an ``asyncio.Future``
that the actor thread completes with ``loop.call_soon_threadsafe``; the loop
never blocks. Awaiting a pykka future directly would call its blocking
``get()`` on the loop and freeze the whole server for the actor's handling
time, so nothing else in the code may do it.

Actor → loop: :func:`run_on_loop` runs a coroutine on the loop with
``asyncio.run_coroutine_threadsafe`` and waits for it on the actor's own
thread, with a timeout. It refuses to run on the loop thread itself, where it
would deadlock.

Example::

    ref = Echo.start()
    assert await ask(ref, "hi", timeout=1.0) == "hi"
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import pykka

T = TypeVar("T")


class ActorUnavailable(RuntimeError):
    """The actor is restarting, failed for good, or the system is shutting down."""


class LoopFuture(pykka.ThreadingFuture[T]):
    """A pykka future that can also be awaited on an event loop without blocking it.

    Actors built on :class:`~exobrain.supervision.actor.SupervisedActor` answer
    asks with these, and may hand them out as receipts for work that completes
    later (the journal's group commit does).
    """

    def __init__(self) -> None:
        super().__init__()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[T]]] = []
        self._completed = self._settling = False
        self._lock = threading.Lock()

    def set(self, value: Any | None = None) -> None:
        super().set(value)
        self._wake()

    def set_exception(self, exc_info: Any | None = None) -> None:
        super().set_exception(exc_info if exc_info is not None else sys.exc_info())
        self._wake()

    def settle(self, outcome: T | BaseException) -> bool:
        """Complete with ``outcome`` (an exception is raised to the waiters) unless some
        thread already settled it: then False. For receipts two threads may complete."""
        with self._lock:
            if self._settling:
                return False
            self._settling = True
        if isinstance(outcome, BaseException):
            self.set_exception((type(outcome), outcome, outcome.__traceback__))
        else:
            self.set(outcome)
        return True

    def _wake(self) -> None:
        with self._lock:
            self._completed = self._settling = True
            waiters, self._waiters = self._waiters, []
        running = _running_loop()
        for loop, waiter in waiters:
            if loop is running:  # completed on the waiter's own loop: no hop
                self._transfer(waiter)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(self._transfer, waiter)

    def _transfer(self, waiter: asyncio.Future[T]) -> None:
        if waiter.done():  # the awaiting side gave up (timeout, cancellation)
            return
        try:
            waiter.set_result(self.get(timeout=0))
        except BaseException as exc:
            waiter.set_exception(exc)

    def _derived(self, *args: Any, **kwargs: Any) -> pykka.Future[Any]:
        raise TypeError(
            "LoopFutures are awaited on the loop: combine them with asyncio (gather), "
            "not with pykka's lazy map/filter/join/reduce, whose results never wake a waiter"
        )

    map = filter = join = reduce = _derived

    def awaitable(self) -> asyncio.Future[T]:
        """An asyncio future on the running loop that completes with this one."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        with self._lock:
            completed = self._completed
            if not completed:
                self._waiters.append((loop, waiter))
        if completed:
            self._transfer(waiter)
        return waiter


async def wait(future: pykka.Future[T], *, timeout: float) -> T:
    """Await a :class:`LoopFuture` from the loop, raising ``TimeoutError`` after ``timeout``."""
    if not isinstance(future, LoopFuture):
        raise TypeError("only LoopFutures can be awaited on the loop; see exobrain.supervision")
    async with asyncio.timeout(timeout):
        result: T = await future.awaitable()
    return result


async def ask(ref: pykka.ActorRef[Any], message: object, *, timeout: float) -> Any:
    """Ask an actor from the event loop; its exception, if any, is raised here.

    An actor that is dead, or dies with the message still in its mailbox,
    raises :class:`ActorUnavailable`.
    """
    try:
        return await wait(ref.ask(message, block=False), timeout=timeout)
    except pykka.ActorDeadError as exc:
        raise ActorUnavailable(f"{ref.actor_class.__name__} is not running") from exc


def tell(ref: pykka.ActorRef[Any], message: object) -> None:
    """Send a fire-and-forget message from the loop (never blocks: the inbox is unbounded)."""
    try:
        ref.tell(message)
    except pykka.ActorDeadError as exc:
        raise ActorUnavailable(f"{ref.actor_class.__name__} is not running") from exc


def run_on_loop(
    loop: asyncio.AbstractEventLoop, coroutine: Coroutine[Any, Any, T], *, timeout: float
) -> T:
    """From an actor thread: run ``coroutine`` on ``loop`` and return its result."""
    if _running_loop() is loop:
        coroutine.close()
        raise RuntimeError("run_on_loop called on the loop's own thread: it would deadlock")
    try:
        future = asyncio.run_coroutine_threadsafe(coroutine, loop)
    except RuntimeError:  # the loop is closed
        coroutine.close()
        raise
    try:
        return future.result(timeout)
    except TimeoutError:
        future.cancel()
        raise


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
