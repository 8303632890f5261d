"""Logins against everything else: a burst of scrypt checks must not stall other requests.

Fifty logins (token mode, the seeded user) start at once while a few workers
poll ``GET /api/users/me`` with a bearer token; the same polling measured
before the burst gives the idle figure to compare with. A browser's write is
measured too: ``PATCH /api/users/me/configs`` with the session cookie, its
page's ``Origin`` and JSON, as the frontend sends it (the cross-site checks'
hot path).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from .load import Request, closed_loop
from .registry import Options, benchmark
from .stats import Summary, summarize

LOGINS = 50
#: Few pollers, so that their latency shows the server's stalls rather than their own load.
PROBES = 4
CREDENTIALS = {
    "email": "test.user@exobrain.local",
    "password": "password123",
    "session_mode": "api",
    "issuance_policy": "tokens",
}


async def _login(session: aiohttp.ClientSession, options: Options) -> str | None:
    """The access token of one login, or None when it failed."""
    async with session.post(options.url + "/api/auth/login", json=CREDENTIALS) as response:
        body = await response.json()
        return str(body["access_token"]) if response.status == 200 else None


async def _burst(session: aiohttp.ClientSession, options: Options) -> Summary:
    latencies: list[float] = []

    async def timed() -> bool:
        started = time.perf_counter()
        token = await _login(session, options)
        latencies.append(time.perf_counter() - started)
        return token is not None

    started = time.perf_counter()
    results = await asyncio.gather(*(timed() for _ in range(LOGINS)))
    return summarize(
        "login burst",
        latencies,
        concurrency=LOGINS,
        seconds=time.perf_counter() - started,
        errors=results.count(False),
    )


async def _poll_while(name: str, request: Request, running: asyncio.Task[Summary]) -> Summary:
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        while not running.done():
            started = time.perf_counter()
            ok = await request()
            latencies.append(time.perf_counter() - started)
            errors += not ok

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(PROBES)))
    return summarize(
        name, latencies, concurrency=PROBES, seconds=time.perf_counter() - started, errors=errors
    )


async def _cookie_writes(options: Options) -> Summary:
    """The browser frontend's PATCH of a setting (to the value it has), on a session cookie."""
    jar = aiohttp.CookieJar(unsafe=True)  # keep cookies of an IP-address host
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        web_login = {key: CREDENTIALS[key] for key in ("email", "password")}
        async with browser.post(options.url + "/api/auth/login", json=web_login) as response:
            if response.status != 200:
                raise RuntimeError(f"the seeded browser login failed: {response.status}")
        headers = {"Origin": options.url}
        body = {"update": {"key": "frontend.theme", "value": "gruvbox-dark"}}

        async def patch() -> bool:
            async with browser.patch(
                options.url + "/api/users/me/configs", json=body, headers=headers
            ) as response:
                await response.read()
                return response.status == 200

        for _ in range(min(200, options.requests)):
            await patch()
        return await closed_loop(
            "cookie configs patch", patch, total=options.requests, concurrency=PROBES
        )


@benchmark("auth")
async def auth(session: aiohttp.ClientSession, options: Options) -> list[Summary]:
    """/api/users/me p99 idle, then during 50 concurrent logins; the logins themselves; a
    cookie-authenticated write."""
    token = await _login(session, options)
    if token is None:
        raise RuntimeError("the seeded login failed: is this an `exobrain dev` server?")
    headers = {"Authorization": f"Bearer {token}"}

    async def me() -> bool:
        async with session.get(options.url + "/api/users/me", headers=headers) as response:
            await response.read()
            return response.status == 200

    for _ in range(min(200, options.requests)):  # warm-up: connections, caches
        await me()
    idle = await closed_loop("users_me idle", me, total=options.requests, concurrency=PROBES)
    burst = asyncio.create_task(_burst(session, options))
    during = await _poll_while("users_me during logins", me, burst)
    done = await burst
    return [idle, during, done, await _cookie_writes(options)]
