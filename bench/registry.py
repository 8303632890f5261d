"""Named benchmarks; a module registers its own with :func:`benchmark`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from .stats import Summary


@dataclass(frozen=True, slots=True)
class Options:
    url: str
    requests: int
    concurrency: int
    #: PostgreSQL for in-process benchmarks (the journal's); None when not given.
    dsn: str | None = None
    #: Sockets to hold open, and per user (``ws-idle``).
    connections: int = 5000
    tabs: int = 5


Benchmark = Callable[[aiohttp.ClientSession, Options], Awaitable[list[Summary]]]
BENCHMARKS: dict[str, Benchmark] = {}


def benchmark(name: str) -> Callable[[Benchmark], Benchmark]:
    def register(function: Benchmark) -> Benchmark:
        BENCHMARKS[name] = function
        return function

    return register
