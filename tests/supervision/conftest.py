"""Fixtures for the supervision tests: systems built per test, nothing left running after it.

Every test ends with all pykka actors stopped and no actor thread it started still
alive; a test that leaks one fails in teardown. Systems made through
``start_system`` are built and stopped off the loop (``asyncio.to_thread``): both block.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

import pykka
import pytest

from exobrain.supervision import ActorSystem, ChildSpec, Intensity

from .support import FAST, StartSystem, actor_threads


@pytest.fixture(autouse=True)
def no_actor_left() -> Iterator[None]:
    """Stops every actor after the test; fails it if one of its actor threads lives on."""
    before = set(threading.enumerate())
    yield
    pykka.ActorRegistry.stop_all(block=True, timeout=5)
    leftover = [thread for thread in actor_threads() if thread not in before]
    deadline = time.monotonic() + 5
    for thread in leftover:
        thread.join(max(0.0, deadline - time.monotonic()))
    assert [thread.name for thread in leftover if thread.is_alive()] == []
    assert pykka.ActorRegistry.get_all() == []


@pytest.fixture
async def start_system() -> AsyncIterator[StartSystem]:
    """Builds actor systems for a test, off the loop, and stops those still running at its end."""
    systems: list[ActorSystem] = []

    async def start(
        children: Sequence[ChildSpec],
        *,
        intensity: Intensity = FAST,
        on_fatal: Callable[[], None] | None = None,
    ) -> ActorSystem:
        system = await asyncio.to_thread(
            ActorSystem, children, intensity=intensity, on_fatal=on_fatal
        )
        systems.append(system)
        return system

    yield start
    for system in reversed(systems):
        if system.root.is_alive():
            await asyncio.to_thread(system.stop, 5)
