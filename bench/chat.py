"""Chat turns over REST + SSE with the mock agent: one user in sequence, many at once.

Needs a server with ``MAIN_AGENT_USE_MOCK=true`` and a high
``CHAT_RATE_LIMIT_PER_MINUTE``, and ``--dsn`` to create the benchmark's users.
A turn is timed from the POST to the stream's ``done``; "first" is the time to
the first ``message_chunk``. :func:`workloads` is the same pair of workloads
for any transport (``chat-ws`` and ``cluster`` run it too).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TypeVar

import aiohttp
import asyncpg
import orjson

from exobrain.auth import hash_password
from exobrain.store.users import ensure_password_user

from .registry import Options, benchmark
from .stats import Summary, summarize

T = TypeVar("T")

PASSWORD = "bench-password"  # noqa: S105 - throw-away accounts of the benchmark

#: The workloads' sizes: one user's turns in sequence; users at once and each one's turns.
SEQUENTIAL_TURNS, USERS, TURNS_PER_USER = 200, 50, 20
#: Logins at once while preparing users (each costs a password hash on the server).
LOGINS_AT_ONCE = 8
#: Longer than any pause of a run, so a user's connection (and its worker) stays the same.
_KEEPALIVE_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class TurnTiming:
    #: Seconds to the stream's ``done``, and to its first ``message_chunk``.
    seconds: float
    first: float
    #: Characters of the answer.
    characters: int


#: One more turn of one user, over whatever transport that user speaks.
Turn = Callable[[], Awaitable[TurnTiming]]


async def create_users(dsn: str, count: int) -> list[str]:
    password_hash = await asyncio.to_thread(hash_password, PASSWORD)
    emails = [f"chat-bench-{uuid.uuid4()}@bench.test" for _ in range(count)]
    connection = await asyncpg.connect(dsn)
    try:
        for email in emails:
            await ensure_password_user(connection, email, "Bench", password_hash)
    finally:
        await connection.close()
    return emails


async def login(session: aiohttp.ClientSession, url: str, email: str) -> dict[str, str]:
    body = {
        "email": email,
        "password": PASSWORD,
        "session_mode": "api",
        "issuance_policy": "tokens",
    }
    async with session.post(f"{url}/api/auth/login", json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"login of {email} answered {response.status}")
        token = (await response.json())["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def gated(count: int, make: Callable[[int], Awaitable[T]]) -> list[T]:
    """``make(0..count-1)``, at most LOGINS_AT_ONCE at a time, in order."""
    gate = asyncio.Semaphore(LOGINS_AT_ONCE)

    async def one(n: int) -> T:
        async with gate:
            return await make(n)

    return await asyncio.gather(*(one(n) for n in range(count)))


#: Wraps the many-users workload (``cluster`` measures every process's CPU over it).
Around = Callable[[], AbstractContextManager[object]]


async def workloads(
    label: str, key: str, users: Sequence[Turn], *, around_many: Around = contextlib.nullcontext
) -> list[Summary]:
    """``users[0]`` sends SEQUENTIAL_TURNS turns one after another (after one warm-up),
    then the other USERS send TURNS_PER_USER each, all at once; keys
    ``<key>.one_user``, ``<key>.first_chunk`` and ``<key>.many``."""
    first_user, others = users[0], users[1:]
    await first_user()  # warm-up
    sequential, firsts, sizes = [], [], []
    started = time.perf_counter()
    for _ in range(SEQUENTIAL_TURNS):
        timing = await first_user()
        sequential.append(timing.seconds)
        firsts.append(timing.first)
        sizes.append(timing.characters)
    one_user = time.perf_counter() - started

    concurrent: list[float] = []

    async def user(turn: Turn) -> None:
        for _ in range(TURNS_PER_USER):
            concurrent.append((await turn()).seconds)

    with around_many():
        started = time.perf_counter()
        await asyncio.gather(*(user(turn) for turn in others))
        many_users = time.perf_counter() - started
    size = {"answer characters (mean)": sum(sizes) / len(sizes)}
    return [
        summarize(
            f"{label} 1 user x {SEQUENTIAL_TURNS} (turn)",
            sequential,
            concurrency=1,
            seconds=one_user,
            notes=size,
            key=f"{key}.one_user",
        ),
        summarize(
            f"{label} 1 user (first chunk)",
            firsts,
            concurrency=1,
            seconds=one_user,
            key=f"{key}.first_chunk",
        ),
        summarize(
            f"{label} {len(others)} users x {TURNS_PER_USER} (turn)",
            concurrent,
            concurrency=len(others),
            seconds=many_users,
            key=f"{key}.many",
        ),
    ]


class RestUser:
    """One user as a browser tab is one: a client session of its own, so every turn rides
    the same kept-alive connection, and on an ``SO_REUSEPORT`` port the same worker, as a
    real client's would (a session shared by all users would spread each user's turns over
    every worker and make most of them cross-instance)."""

    def __init__(self, url: str) -> None:
        self._url = url
        connector = aiohttp.TCPConnector(keepalive_timeout=_KEEPALIVE_SECONDS)
        self._session = aiohttp.ClientSession(connector=connector)
        self._headers: dict[str, str] = {}

    async def login(self, email: str) -> RestUser:
        self._headers = await login(self._session, self._url, email)
        return self

    async def turn(self) -> TurnTiming:
        started = time.perf_counter()
        body = {"message": "Plan my day", "client_message_id": str(uuid.uuid4())}
        async with self._session.post(
            f"{self._url}/api/chat/message", json=body, headers=self._headers
        ) as response:
            if response.status != 200:
                raise RuntimeError(f"POST /api/chat/message: {response.status} {response.reason}")
            stream_id = (await response.json())["stream_id"]
        first, characters, chunk = 0.0, 0, False
        async with self._session.get(
            f"{self._url}/api/chat/stream/{stream_id}", headers=self._headers
        ) as stream:
            async for line in stream.content:
                if line.startswith(b"event: "):
                    chunk = line.startswith(b"event: message_chunk")
                    if chunk and not first:
                        first = time.perf_counter() - started
                elif chunk and line.startswith(b"data: "):
                    characters += len(orjson.loads(line[6:])["text"])
        return TurnTiming(time.perf_counter() - started, first, characters)

    async def close(self) -> None:
        await self._session.close()


async def rest_workloads(
    url: str, dsn: str, *, label: str, key: str, around_many: Around = contextlib.nullcontext
) -> list[Summary]:
    """:func:`workloads` over REST + SSE on ``url``, with new users in ``dsn``."""
    emails = await create_users(dsn, USERS + 1)
    users = [RestUser(url) for _ in emails]
    try:
        await gated(len(users), lambda n: users[n].login(emails[n]))
        turns = [user.turn for user in users]
        return await workloads(label, key, turns, around_many=around_many)
    finally:
        await asyncio.gather(*(user.close() for user in users))


@benchmark("chat")
async def chat(session: aiohttp.ClientSession, options: Options) -> list[Summary]:
    """200 turns by one user in sequence; 50 users sending 20 turns each at once."""
    if options.dsn is None:
        raise SystemExit("the chat benchmark needs --dsn (the server's database) to create users")
    return await rest_workloads(options.url, options.dsn, label="chat", key="chat")
