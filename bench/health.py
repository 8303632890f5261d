"""The cheapest endpoints: the HTTP stack's own floor, and readiness fan-out cost."""

from __future__ import annotations

import aiohttp

from .load import closed_loop
from .registry import Options, benchmark
from .stats import Summary


async def _get_loop(
    name: str, path: str, session: aiohttp.ClientSession, options: Options
) -> Summary:
    async def request() -> bool:
        async with session.get(options.url + path) as response:
            await response.read()
            return response.status == 200

    for _ in range(min(200, options.requests)):  # warm-up: connections, caches
        await request()
    return await closed_loop(name, request, total=options.requests, concurrency=options.concurrency)


@benchmark("healthz")
async def healthz(session: aiohttp.ClientSession, options: Options) -> list[Summary]:
    """GET /healthz: the floor of a request through the middleware stack."""
    return [await _get_loop("healthz", "/healthz", session, options)]


@benchmark("readyz")
async def readyz(session: aiohttp.ClientSession, options: Options) -> list[Summary]:
    """GET /readyz: every dependency checked in parallel."""
    return [await _get_loop("readyz", "/readyz", session, options)]
