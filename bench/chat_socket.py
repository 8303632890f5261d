"""Chat over ``/api/chat/ws``: turns, idle connections' memory, and a plain echo as the ceiling.

``chat-ws`` runs the ``chat`` benchmark's workloads over WebSockets (one
socket per user; a turn is timed from ``chat.send`` to the stream's ``done``).
``ws-idle`` opens ``--connections`` authenticated sockets (``--tabs`` per
user) and divides the server's RSS growth by their number. ``ws-echo`` is the
ceiling: a bare aiohttp echo server on this machine, driven by 50 sockets.
All need the mock agent; ``chat-ws`` and ``ws-idle`` need ``--dsn``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import resource
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import aiohttp
import orjson
import psutil

from .chat import USERS, Around, TurnTiming, create_users, gated, login, workloads
from .registry import Options, benchmark
from .stats import Summary, summarize


def _ws_url(url: str) -> str:
    return url.replace("http", "ws", 1) + "/api/chat/ws"


async def _headers(
    session: aiohttp.ClientSession, url: str, dsn: str | None, users: int
) -> list[dict[str, str]]:
    """Bearer headers of ``users`` new users of ``dsn``, logged in on ``url``."""
    if dsn is None:
        raise SystemExit("this benchmark needs --dsn (the server's database) to create users")
    emails = await create_users(dsn, users)
    return await gated(len(emails), lambda n: login(session, url, emails[n]))


async def socket_turn(ws: aiohttp.ClientWebSocketResponse) -> TurnTiming:
    """One turn over the user's socket, from ``chat.send`` to the stream's ``done``."""
    started = time.perf_counter()
    send = {"type": "chat.send", "client_message_id": str(uuid.uuid4()), "message": "Plan my day"}
    await ws.send_str(orjson.dumps(send).decode())
    first, characters, stream_id = 0.0, 0, None
    async for message in ws:
        frame = orjson.loads(message.data)
        if frame["type"] == "chat.accepted":
            stream_id = frame["stream_id"]
        elif frame["type"] == "event" and frame["stream_id"] == stream_id:
            if frame["event"] == "message_chunk":
                characters += len(frame["data"]["text"])
                if not first:
                    first = time.perf_counter() - started
            elif frame["event"] == "done":
                return TurnTiming(time.perf_counter() - started, first, characters)
        elif frame["type"] == "error":
            raise RuntimeError(frame["message"])
    raise RuntimeError(f"the socket closed mid-turn (code {ws.close_code})")


async def socket_workloads(
    session: aiohttp.ClientSession,
    url: str,
    dsn: str,
    *,
    label: str,
    key: str,
    around_many: Around = contextlib.nullcontext,
) -> list[Summary]:
    """The ``chat`` workloads (:func:`bench.chat.workloads`) with one socket per user."""
    headers = await _headers(session, url, dsn, USERS + 1)
    sockets = [await session.ws_connect(_ws_url(url), headers=h, max_msg_size=0) for h in headers]
    try:
        turns = [functools.partial(socket_turn, ws) for ws in sockets]
        return await workloads(label, key, turns, around_many=around_many)
    finally:
        for ws in sockets:
            await ws.close()


@benchmark("chat-ws")
async def chat_ws(session: aiohttp.ClientSession, options: Options) -> list[Summary]:
    """200 turns by one user in sequence; 50 users sending 20 turns each at once."""
    if options.dsn is None:
        raise SystemExit("chat-ws needs --dsn (the server's database) to create users")
    return await socket_workloads(session, options.url, options.dsn, label="chat-ws", key="chat-ws")


def _server_process(url: str) -> psutil.Process:
    port = urlsplit(url).port or 80
    for connection in psutil.net_connections(kind="tcp"):
        listening = connection.status == psutil.CONN_LISTEN and connection.pid is not None
        if listening and connection.laddr and connection.laddr.port == port:
            return psutil.Process(connection.pid)
    raise SystemExit(f"no process of this user listens on port {port}")


def _allow_files(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(count, hard), hard))


@benchmark("ws-idle")
async def ws_idle(session: aiohttp.ClientSession, options: Options) -> list[Summary]:
    """RSS of the server per idle authenticated socket, with ``--connections`` open."""
    server = _server_process(options.url)
    _allow_files(options.connections + 1000)
    users = -(-options.connections // options.tabs)
    headers = await _headers(session, options.url, options.dsn, users)
    url = _ws_url(options.url)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as sockets_session:
        await asyncio.sleep(1.0)
        before = server.memory_info().rss
        opened, latencies = [], []
        started = time.perf_counter()
        for n in range(options.connections):
            at = time.perf_counter()
            opened.append(await sockets_session.ws_connect(url, headers=headers[n // options.tabs]))
            latencies.append(time.perf_counter() - at)
        seconds = time.perf_counter() - started
        await asyncio.sleep(2.0)  # let the server settle (sessions started, buffers freed)
        after = server.memory_info().rss
        for ws in opened:
            await ws.close()
    per_connection = (after - before) / options.connections
    return [
        summarize(
            f"ws-idle {options.connections} sockets (connect)",
            latencies,
            concurrency=1,
            seconds=seconds,
            notes={
                "server RSS before (MiB)": before / 2**20,
                "server RSS after (MiB)": after / 2**20,
                "per connection (KiB)": per_connection / 1024,
                "users": len(headers),
            },
        )
    ]


@contextlib.asynccontextmanager
async def _echo_server() -> AsyncIterator[str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.echo_server", str(port)
    )
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.1)
        yield f"ws://127.0.0.1:{port}/"
    finally:
        process.terminate()
        await process.wait()


@benchmark("ws-echo")
async def ws_echo(session: aiohttp.ClientSession, options: Options) -> list[Summary]:
    """Round trips of an event-sized frame over 50 sockets to a bare aiohttp echo server."""
    frame = orjson.dumps(
        {
            "type": "event",
            "stream_id": str(uuid.uuid4()),
            "seq": 1,
            "event": "message_chunk",
            "data": {"text": "a word "},
        }
    ).decode()
    per_socket = max(1, options.requests // 50)
    latencies: list[float] = []
    errors = 0
    async with _echo_server() as url:
        sockets = [await session.ws_connect(url) for _ in range(50)]

        async def drive(ws: aiohttp.ClientWebSocketResponse) -> None:
            nonlocal errors
            for _ in range(per_socket):
                at = time.perf_counter()
                await ws.send_str(frame)
                echoed = await ws.receive()
                if echoed.type is not aiohttp.WSMsgType.TEXT or echoed.data != frame:
                    errors += 1
                    return
                latencies.append(time.perf_counter() - at)

        started = time.perf_counter()
        await asyncio.gather(*(drive(ws) for ws in sockets))
        seconds = time.perf_counter() - started
        for ws in sockets:
            await ws.close()
    name = "ws-echo 50 sockets (round trip)"
    return [summarize(name, latencies, concurrency=50, seconds=seconds, errors=errors)]
