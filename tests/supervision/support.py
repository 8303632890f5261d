"""Helpers shared by the supervision tests: the fast restart intensity, polling, thread census."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import pykka
from pykka.messages import ProxyGetAttr

from exobrain.supervision import (
    ActorSystem,
    ActorUnavailable,
    ChildHandle,
    ChildSpec,
    Intensity,
    ask,
)

#: Restarts quickly; the third failure within ten seconds escalates.
FAST = Intensity(max_restarts=2, window=10, backoff_initial=0.01, backoff_max=0.05)


def actor_threads() -> list[threading.Thread]:
    """Live threads that run a pykka actor's loop, whatever the actor's class."""
    threads = []
    for thread in threading.enumerate():
        target = getattr(thread, "_target", None)  # Thread.run() deletes it on exit
        if isinstance(getattr(target, "__self__", None), pykka.Actor) and thread.is_alive():
            threads.append(thread)
    return threads


async def eventually(condition: Callable[[], bool], what: str, *, timeout: float = 5.0) -> None:
    """Poll ``condition`` from the loop until it holds; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting until {what}")
        await asyncio.sleep(0.002)


async def signalled(event: threading.Event, what: str, *, timeout: float = 5.0) -> None:
    """Wait for a ``threading.Event`` set by an actor thread, without blocking the loop."""
    if not await asyncio.to_thread(event.wait, timeout):
        raise AssertionError(f"timed out after {timeout}s waiting until {what}")


async def answering(
    handle: ChildHandle, *, not_urn: str | None = None, timeout: float = 5.0
) -> str:
    """Wait until the incarnation behind ``handle`` (other than ``not_urn``) answers an ask.

    An answer proves its ``started()`` succeeded (pykka handles messages only after it), so
    an incarnation about to fail its start is never mistaken for a running one. The probe
    reads the actor's URN through pykka's own attribute access, which any actor answers.
    """
    deadline = time.monotonic() + timeout
    while True:
        urn = handle.urn
        if urn is not None and urn != not_urn and handle.state == "running":
            probe = ProxyGetAttr(attr_path=("actor_urn",))
            try:
                answered = await ask(handle.ref, probe, timeout=timeout)
            except (ActorUnavailable, pykka.ActorDeadError):
                pass  # that incarnation died meanwhile; wait for the next one
            else:
                if answered == handle.urn:
                    assert isinstance(answered, str)
                    return answered
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {handle.name} to answer")
        await asyncio.sleep(0.002)


async def started(system: ActorSystem, name: str) -> ChildHandle:
    """Wait until the root has started its children and ``name`` answers; return its handle."""
    await system.snapshot()
    handle = system.handle(name)
    await answering(handle)
    return handle


class StartSystem(Protocol):
    """The ``start_system`` fixture: builds an :class:`ActorSystem` off the loop (construction
    blocks until the root has started its children) and stops it after the test."""

    async def __call__(
        self,
        children: Sequence[ChildSpec],
        *,
        intensity: Intensity = ...,
        on_fatal: Callable[[], None] | None = ...,
    ) -> ActorSystem: ...
