"""Message pages of a 1,000-message journal over HTTP, as a client pages through them.

``GET /api/journal/2024/12/31/messages?limit=100`` with cursors drawn from ten
values, signed in as the seeded ``test.user@exobrain.local``. The journal is
written first, if missing, straight into ``--dsn`` with the JournalActor's own
batch writer (the server's data path, without its process): 1,000 messages of
100-1,500 characters. The server decides whether the cache is used: run once
against a default server (pages warm: every cursor is fetched once first) and
once against one started with ``JOURNAL_CACHE_ENABLED=false``; each result is
named after the ``X-Cache`` answers it got (``hit``, ``bypass``).

``journal-api-raw`` sends the same requests from a client that costs the
shared cores less: one HTTP/1.1 keep-alive connection per worker on a bare
asyncio protocol that reads ``Content-Length`` bytes and compares each body
with the one its cursor answered first (checked as ``journal-api`` checks it).
aiohttp's client spends 0.11-0.18 ms of CPU per 80 KB page, as much as the
server's hit, on the same two cores; this one leaves that CPU to the server.
Compare with a reference only when both were measured with the same client.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import replace
from typing import cast
from urllib.parse import urlsplit

import aiohttp
import asyncpg

from exobrain.actors.journal import AppendMessages, NewMessage
from exobrain.actors.journal.store import write_batch
from exobrain.config import load_settings
from exobrain.store import create_pool

from .auth import _login
from .load import closed_loop
from .registry import Options, benchmark
from .stats import Summary

REFERENCE = "2024/12/31"
MESSAGES = 1000
PAGE = 100
#: No cursor (the newest page), then the start of every older page.
CURSORS = [None, *range(MESSAGES - PAGE + 1, 1, -PAGE)]
EMAIL = "test.user@exobrain.local"
_WORDS = ("journal", "memory", "review", "sleep", "spaced", "repetition", "plan", "note", "idea")


async def _ensure_journal(dsn: str) -> None:
    pool = await create_pool(load_settings(assistant_db_dsn=dsn))
    try:
        user_id = await pool.fetchval("SELECT id FROM users WHERE lower(email) = $1", EMAIL)
        if user_id is None:
            raise SystemExit(f"{EMAIL} is missing: is this an `exobrain dev` database?")
        stored = await pool.fetchval(
            "SELECT message_count FROM conversations WHERE user_id = $1 AND reference = $2",
            user_id,
            REFERENCE,
        )
        rng = random.Random(REFERENCE)
        for start in range(stored or 0, MESSAGES, PAGE):
            batch = tuple(
                NewMessage(
                    "user" if n % 2 else "assistant",
                    " ".join(rng.choices(_WORDS, k=300))[: rng.randint(100, 1500)],
                )
                for n in range(start, min(start + PAGE, MESSAGES))
            )
            await write_batch(pool, [AppendMessages(user_id, REFERENCE, batch)])
    finally:
        await pool.close()


async def _signed_in(session: aiohttp.ClientSession, options: Options) -> str:
    """The journal written if missing, and an access token of the seeded user."""
    if options.dsn is None:
        raise SystemExit("journal-api needs --dsn (or ASSISTANT_DB_DSN) to write its journal")
    try:
        await _ensure_journal(options.dsn)
    except (OSError, asyncpg.PostgresError) as exc:
        raise SystemExit(f"cannot write the benchmark journal: {exc}") from exc
    token = await _login(session, options)
    if token is None:
        raise SystemExit("the seeded login failed: is this an `exobrain dev` server?")
    return token


def _query(cursor: int | None) -> str:
    return f"limit={PAGE}" + (f"&cursor={cursor}" if cursor else "")


@benchmark("journal-api")
async def journal_api(session: aiohttp.ClientSession, options: Options) -> list[Summary]:
    """Message pages (limit 100) of a 1,000-message journal at ``--concurrency``."""
    headers = {"Authorization": f"Bearer {await _signed_in(session, options)}"}
    url = f"{options.url}/api/journal/{REFERENCE}/messages"
    answers: Counter[str] = Counter()

    async def page(cursor: int | None) -> bool:
        async with session.get(f"{url}?{_query(cursor)}", headers=headers) as response:
            body = await response.read()
            answers[response.headers.get("X-Cache", "none")] += 1
            return response.status == 200 and body.count(b'"sequence"') == PAGE

    for cursor in CURSORS:  # warm-up: connections, and the cache when it is on
        await page(cursor)
    answers.clear()
    result = await closed_loop(
        "journal_messages",
        lambda: page(random.choice(CURSORS)),
        total=options.requests,
        concurrency=options.concurrency,
    )
    cache = ",".join(outcome for outcome, _ in answers.most_common())
    return [replace(result, name=f"journal_messages cache={cache}")]


class _Connection(asyncio.BufferedProtocol):
    """One keep-alive HTTP/1.1 connection: a request at a time, its answer by Content-Length.

    The socket is read straight into one buffer; the body is copied out once.
    """

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray(1 << 18)
        self._view = memoryview(self._buffer)
        self._filled = 0
        self._head = b""
        self._start = self._end = -1  # where the body starts and ends, once the head is in
        self._answer: asyncio.Future[tuple[bytes, bytes]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc or ConnectionResetError("closed by the server"))

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._filled == len(self._view):  # a larger answer: a buffer twice the size
            grown = bytearray(2 * len(self._buffer))
            grown[: self._filled] = self._buffer
            self._buffer, self._view = grown, memoryview(grown)
        return self._view[self._filled :]

    def buffer_updated(self, nbytes: int) -> None:
        self._filled += nbytes
        if self._end < 0:
            if (blank := self._buffer.find(b"\r\n\r\n", 0, self._filled)) < 0:
                return
            self._head = bytes(self._view[:blank]).lower()
            length = self._head.partition(b"content-length:")[2].partition(b"\r\n")[0]
            self._start = blank + 4
            self._end = self._start + int(length)
        if self._filled >= self._end and self._answer is not None:
            body = self._view[self._start : self._end].tobytes()
            self._filled, self._start, self._end = 0, -1, -1
            self._answer.set_result((self._head, body))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def get(self, request: bytes) -> tuple[bytes, bytes]:
        """The lower-cased head and the body of the answer to ``request``."""
        assert self._transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return await self._answer


def _x_cache(head: bytes) -> str:
    return head.partition(b"\r\nx-cache: ")[2].partition(b"\r\n")[0].decode() or "none"


@benchmark("journal-api-raw")
async def journal_api_raw(session: aiohttp.ClientSession, options: Options) -> list[Summary]:
    """``journal-api`` from a bare HTTP/1.1 client, one connection per worker."""
    token = await _signed_in(session, options)
    url = urlsplit(options.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    path = f"/api/journal/{REFERENCE}/messages"
    requests = {
        cursor: (
            f"GET {path}?{_query(cursor)} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
        for cursor in CURSORS
    }
    loop = asyncio.get_running_loop()
    connections = [
        (await loop.create_connection(_Connection, host, port))[1]
        for _ in range(options.concurrency)
    ]
    bodies: dict[int | None, bytes] = {}
    for cursor, request in requests.items():  # warm-up, and each cursor's page checked once
        head, body = await connections[0].get(request)
        if not head.startswith(b"http/1.1 200") or body.count(b'"sequence"') != PAGE:
            raise SystemExit(f"unexpected answer to {request!r}: {head!r}")
        bodies[cursor] = body
    answers: Counter[str] = Counter()
    idle = list(connections)

    async def page() -> bool:
        cursor = random.choice(CURSORS)
        connection = idle.pop()
        try:
            head, body = await connection.get(requests[cursor])
        finally:
            idle.append(connection)
        answers[_x_cache(head)] += 1
        return head.startswith(b"http/1.1 200") and body == bodies[cursor]

    try:
        result = await closed_loop(
            "journal_messages_raw", page, total=options.requests, concurrency=options.concurrency
        )
    finally:
        for connection in connections:
            connection.close()
    cache = ",".join(outcome for outcome, _ in answers.most_common())
    return [replace(result, name=f"journal_messages_raw cache={cache}")]
