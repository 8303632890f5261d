"""A closed-loop load generator: ``concurrency`` workers share ``total`` requests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from .stats import Summary, summarize

#: One request; returns True when the answer was the expected one.
Request = Callable[[], Awaitable[bool]]


async def closed_loop(name: str, request: Request, *, total: int, concurrency: int) -> Summary:
    latencies: list[float] = []
    errors = 0
    remaining = total

    async def worker() -> None:
        nonlocal remaining, errors
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            try:
                ok = await request()
            except Exception:  # a failed request is counted, not fatal to the run
                ok = False
            latencies.append(time.perf_counter() - started)
            errors += not ok

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return summarize(
        name,
        latencies,
        concurrency=concurrency,
        seconds=time.perf_counter() - started,
        errors=errors,
    )
