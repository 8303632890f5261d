"""Chat turns over REST + SSE with the mock agent: one user in sequence, many at once.

Needs a server with ``MAIN_AGENT_USE_MOCK=true`` and a high
``CHAT_RATE_LIMIT_PER_MINUTE``, and ``--dsn`` to create the benchmark's users.
A turn is timed from the POST to the stream's ``done``; "first" is the time to
the first ``message_chunk``.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp
import asyncpg
import orjson

from exobrain.auth import hash_password
from exobrain.store.users import ensure_password_user

from .registry import Options, benchmark
from .stats import Summary, summarize

PASSWORD = "bench-password"  # noqa: S105 - throw-away accounts of the benchmark


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
        token = (await response.json())["access_token"]
    return {"Authorization": f"Bearer {token}"}


async def _turn(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[float, float, int]:
    """One turn: (seconds to done, seconds to the first chunk, characters answered)."""
    started = time.perf_counter()
    body = {"message": "Plan my day", "client_message_id": str(uuid.uuid4())}
    async with session.post(f"{url}/api/chat/message", json=body, headers=headers) as response:
        stream_id = (await response.json())["stream_id"]
    first, characters, chunk = 0.0, 0, False
    async with session.get(f"{url}/api/chat/stream/{stream_id}", headers=headers) as stream:
        async for line in stream.content:
            if line.startswith(b"event: "):
                chunk = line.startswith(b"event: message_chunk")
                if chunk and not first:
                    first = time.perf_counter() - started
            elif chunk and line.startswith(b"data: "):
                characters += len(orjson.loads(line[6:])["text"])
    return time.perf_counter() - started, first, characters


@benchmark("chat")
async def chat(session: aiohttp.ClientSession, options: Options) -> list[Summary]:
    """200 turns by one user in sequence; 50 users sending 20 turns each at once."""
    if options.dsn is None:
        raise SystemExit("the chat benchmark needs --dsn (the server's database) to create users")
    emails = await create_users(options.dsn, 51)
    headers = [await login(session, options.url, email) for email in emails]
    await _turn(session, options.url, headers[0])  # warm-up

    sequential, firsts, sizes = [], [], []
    started = time.perf_counter()
    for _ in range(200):
        seconds, first, characters = await _turn(session, options.url, headers[0])
        sequential.append(seconds)
        firsts.append(first)
        sizes.append(characters)
    one_user = time.perf_counter() - started

    concurrent: list[float] = []

    async def user(user_headers: dict[str, str]) -> None:
        for _ in range(20):
            concurrent.append((await _turn(session, options.url, user_headers))[0])

    started = time.perf_counter()
    await asyncio.gather(*(user(h) for h in headers[1:]))
    many_users = time.perf_counter() - started
    print(f"chat: answers averaged {sum(sizes) / len(sizes):.0f} characters")
    return [
        summarize("chat 1 user x 200 (turn)", sequential, concurrency=1, seconds=one_user),
        summarize("chat 1 user (first chunk)", firsts, concurrency=1, seconds=one_user),
        summarize("chat 50 users x 20 (turn)", concurrent, concurrency=50, seconds=many_users),
    ]
