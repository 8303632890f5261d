"""2. Event lag across instances: B's arrival of an event minus the owner's own socket's."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import aiohttp
import orjson

from bench.chat import create_users, gated, login
from bench.stats import Summary, summarize

from ._servers import TURN_TIMEOUT, Deployment, Server, owned, user_ids

#: Event lag: users, turns each (about 150 events a turn), and the owner's pace.
LAG_USERS, LAG_TURNS, LAG_WORDS_PER_SECOND = 10, 3, 50


class SocketLog:
    """A user's socket with every frame's arrival time, read by a task of its own."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        #: (stream id, seq) → perf_counter() at the arrival of the frame carrying it.
        self.arrivals: dict[tuple[str, int], float] = {}
        self.merged = 0  # frames carrying several chunks (a reader that fell behind)
        self._waiting: dict[tuple[str, str], asyncio.Future[str]] = {}
        self._task = asyncio.create_task(self._read())

    def _future(self, kind: str, about: str) -> asyncio.Future[str]:
        return self._waiting.setdefault((kind, about), asyncio.get_running_loop().create_future())

    async def _read(self) -> None:
        async for message in self.ws:
            at = time.perf_counter()
            frame = orjson.loads(message.data)
            kind = frame["type"]
            if kind == "event":
                stream_id, seq = frame["stream_id"], frame["seq"]
                first = frame.get("first_seq", seq)
                self.merged += first != seq
                for n in range(first, seq + 1):
                    self.arrivals.setdefault((stream_id, n), at)
                if frame["event"] == "done":
                    _settle(self._future("done", stream_id), stream_id)
            elif kind in ("chat.accepted", "pong"):
                about = frame.get("client_message_id", "")
                _settle(self._future(kind, about), frame.get("stream_id", ""))
            elif kind == "error":
                for future in self._waiting.values():
                    if not future.done():
                        future.set_exception(RuntimeError(f"error frame: {frame}"))

    async def wait(self, kind: str, about: str = "") -> str:
        return await asyncio.wait_for(self._future(kind, about), TURN_TIMEOUT)

    async def ping(self) -> None:
        """Answered once the server attached the socket (it reads frames only then)."""
        await self.ws.send_str('{"type": "ping"}')
        await self.wait("pong")

    async def send(self) -> str:
        """One message; its stream id once accepted."""
        cid = str(uuid.uuid4())
        await self.ws.send_str(
            orjson.dumps({"type": "chat.send", "client_message_id": cid, "message": "Hi"}).decode()
        )
        return await self.wait("chat.accepted", cid)

    async def close(self) -> None:
        await self.ws.close()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiohttp.ClientError):
            await self._task


def _settle(future: asyncio.Future[str], value: str) -> None:
    if not future.done():
        future.set_result(value)


async def event_lag(deployment: Deployment, session: aiohttp.ClientSession) -> list[Summary]:
    pace = str(LAG_WORDS_PER_SECOND)
    a, b = await deployment.start(session, "lag-a", "lag-b", MAIN_AGENT_MOCK_WORDS_PER_SECOND=pace)
    emails = await create_users(deployment.dsn, LAG_USERS)
    headers = await gated(LAG_USERS, lambda n: login(session, a.url, emails[n]))
    logs: dict[Server, list[SocketLog]] = {}
    try:
        for server in (a, b):
            url = server.url.replace("http", "ws", 1) + "/api/chat/ws"
            sockets = [await session.ws_connect(url, headers=h, max_msg_size=0) for h in headers]
            logs[server] = [SocketLog(ws) for ws in sockets]
        await asyncio.gather(*(log.ping() for log in logs[a] + logs[b]))

        async def user(n: int) -> None:
            for _ in range(LAG_TURNS):
                stream_id = await logs[a][n].send()
                await logs[a][n].wait("done", stream_id)
                await logs[b][n].wait("done", stream_id)

        started = time.perf_counter()
        await asyncio.gather(*(user(n) for n in range(LAG_USERS)))
        seconds = time.perf_counter() - started
        users = await user_ids(deployment.dsn, emails)
        on_a, on_b = await owned(session, a), await owned(session, b)
    finally:
        for log in [log for logs_ in logs.values() for log in logs_]:
            await log.close()
    await deployment.stop(a, b)
    lags, only_a, only_b, merged = [], 0, 0, 0
    for log_a, log_b in zip(logs[a], logs[b], strict=True):
        common = log_a.arrivals.keys() & log_b.arrivals.keys()
        lags += [log_b.arrivals[key] - log_a.arrivals[key] for key in common]
        only_a += len(log_a.arrivals.keys() - common)
        only_b += len(log_b.arrivals.keys() - common)
        merged += log_b.merged + log_a.merged
    misplaced = len(users - on_a) + len(users & on_b)
    print(
        f"cluster event lag: {len(lags)} events of {LAG_USERS * LAG_TURNS} turns owned by A "
        f"({LAG_WORDS_PER_SECOND} words/s); B's arrival minus the owner's own socket's"
    )
    return [
        summarize(
            "cluster event lag B-A (vs owner's socket)",
            lags,
            concurrency=LAG_USERS,
            seconds=seconds,
            errors=only_a + only_b + misplaced,
            notes={
                "events only on A": only_a,
                "events only on B": only_b,
                "merged frames": merged,
                "users not owned by A alone": misplaced,
                "mock words/s": LAG_WORDS_PER_SECOND,
            },
            key="cluster.event_lag",
        )
    ]


# -- 3. fail-over -------------------------------------------------------------------------
