"""The service as a cluster, on servers this benchmark starts itself.

python -m bench cluster --dsn postgresql://postgres@127.0.0.1:5432/bench_cluster

Redis at ``$EXOBRAIN_BENCH_REDIS_URL`` (default redis://127.0.0.1:6379/0),
NATS at ``$EXOBRAIN_NATS_URL`` (default nats://127.0.0.1:4222). Every server is
``python -m exobrain serve`` in a directory of its own under a temp dir (no
``.env`` is read there; its stdout and stderr are files there, and the path is
printed if the run fails), with the mock agent and a Redis key prefix and
JetStream names of this run's own, removed at the end. Servers are stopped with
SIGTERM, then SIGKILL, whatever happens, and die with this process (Linux
``PR_SET_PDEATHSIG``).

1. **Throughput**: the ``chat`` and ``chat-ws`` workloads (bench/chat.py)
   against ``--workers 1``, then ``--workers 2``, and the ratio of their
   50-user turns/s, with every party's CPU per turn over that workload, so a
   ratio short of 2 can be traced to who spent the cores.
2. **Event lag across instances**: A owns the users (turns sent through A,
   the mock paced), each user has a socket on A and one on B. Frames carry no
   producer time, so an event's lag is its arrival on B minus the arrival of
   the same ``(stream_id, seq)`` on A's socket, the owner's own fast path: it
   is relative to that socket, not to the moment the owner produced it.
3. **Fail-over**, for two lease TTLs, on a fresh pair A and B per trial: a
   paced long turn owned by A, followed over SSE on B; A is killed with
   SIGKILL; the time from the kill to that stream's ``done`` on B, to the
   ``done`` of the user's next message sent through B at once (503 retried
   with the same ``client_message_id``), and to the ``done`` of another user
   of A whose message goes through B LATER_SEND s after the kill.

Servers log at INFO with ACCESS_LOG=false, as a production instance would.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import math
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import nats
import nats.errors
import orjson
import psutil
import redis.asyncio as redis
from nats.js.errors import NotFoundError

from exobrain.agent.mock import SEPARATOR
from exobrain.config import Settings

from .chat import TURNS_PER_USER, USERS, create_users, gated, login, rest_workloads
from .chat_socket import socket_workloads
from .registry import Options, benchmark
from .stats import Summary, summarize

REPO = Path(__file__).resolve().parents[1]
_SERVING = re.compile(r"exobrain is serving at (http://\S+)")

#: Event lag: users, turns each (about 150 events a turn), and the owner's pace.
LAG_USERS, LAG_TURNS, LAG_WORDS_PER_SECOND = 10, 3, 50
#: Fail-over: lease TTLs tried, trials of each, the pace, and the chunks B must have
#: seen before the kill (the turn is under way and followed from B).
FAILOVER_TTLS, FAILOVER_TRIALS, FAILOVER_WORDS_PER_SECOND, FAILOVER_SEEN = (2.0, 5.0), 4, 50, 5
#: The mock's replies in the fail-over: A answers short, long (about 12 s at the pace),
#: short...: the first user's warm-up, the turn cut short, the second user's warm-up;
#: B answers only short ones. The second user's message goes through B this long after
#: the kill, when NATS knows A is gone (a command sent to A before it does waits for the
#: whole forwarding timeout).
LATER_SEND = 0.25
SHORT_REPLY = "Noted, thanks."
LONG_REPLY = " ".join(f"word{n}" for n in range(600))

_READY_TIMEOUT = 90.0
_STOP_GRACE = 25.0  # ACTOR_SHUTDOWN_TIMEOUT_SECONDS below, plus closing connections
_TURN_TIMEOUT = 60.0


# -- servers ------------------------------------------------------------------------------


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` arming Linux ``PR_SET_PDEATHSIG``: a server dies with this process
    even when it is killed outright. Popen must run on the main thread, since the signal
    follows the thread that forked."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # resolved before the fork

    def arm() -> None:
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)

    return arm


@dataclass(eq=False)
class Server:
    """One ``exobrain serve`` process (with ``--workers 2``, a supervisor and its workers)."""

    name: str
    directory: Path
    process: subprocess.Popen[bytes]
    url: str = ""
    #: Its processes as last seen, so that a worker outliving its parent is still stopped.
    known: list[psutil.Process] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        text = (self.directory / "stderr.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def processes(self) -> list[psutil.Process]:
        """The server and its workers, now (once it exited: those of its workers still alive)."""
        if self.running:  # not reaped yet, so its pid cannot belong to another process
            with contextlib.suppress(psutil.Error):
                parent = psutil.Process(self.process.pid)
                found = [parent, *parent.children(recursive=True)]
                pids = {process.pid for process in found}
                self.known = found + [p for p in self.known if p.pid not in pids]
        self.known = [p for p in self.known if p.is_running()]  # psutil checks identity
        return self.known

    async def ready(self, session: aiohttp.ClientSession) -> None:
        """Until it printed its address and ``/readyz`` answers 200."""
        deadline = time.monotonic() + _READY_TIMEOUT
        while not self.url:
            self._alive()
            found = _SERVING.search((self.directory / "stdout.log").read_text(errors="replace"))
            if found:
                self.url = found.group(1)
            elif time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} printed no address in {_READY_TIMEOUT:g} s")
            else:
                await asyncio.sleep(0.05)
        while True:
            self._alive()
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                timeout = aiohttp.ClientTimeout(total=3)
                async with session.get(f"{self.url}/readyz", timeout=timeout) as response:
                    if response.status == 200:
                        break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} /readyz not 200 in {_READY_TIMEOUT:g} s")
            await asyncio.sleep(0.1)
        self.processes()

    def _alive(self) -> None:
        if not self.running:
            raise RuntimeError(
                f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
            )

    def kill(self) -> None:
        """SIGKILL, as a crashed machine: nothing of it runs on."""
        self.process.kill()

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL to whatever of it still runs after the grace period."""
        processes = self.processes()
        if self.running:
            self.process.terminate()
        _, lingering = await asyncio.to_thread(psutil.wait_procs, processes, _STOP_GRACE)
        for process in lingering:
            with contextlib.suppress(psutil.Error):
                process.kill()  # psutil checks it is still the same process
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(self.process.wait, 10)


class Deployment:
    """What one run starts and the names it owns; :meth:`close` stops and removes it all."""

    def __init__(self, root: Path, dsn: str, redis_url: str, nats_url: str) -> None:
        self.root, self.dsn, self.redis_url, self.nats_url = root, dsn, redis_url, nats_url
        self.token = secrets.token_hex(4)
        self.servers: list[Server] = []
        known = {name.upper() for name in Settings.model_fields}
        self._env = {name: value for name, value in os.environ.items() if name.upper() not in known}
        self._env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        self._env["PYTHONUNBUFFERED"] = "1"
        self.settings = {
            "APP_ENV": "local",
            "LOG_LEVEL": "INFO",
            "ACCESS_LOG": "false",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": "0",
            "ASSISTANT_DB_DSN": dsn,
            "ASSISTANT_CACHE_REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": f"bench:{self.token}:",
            "EXOBRAIN_NATS_URL": nats_url,
            "MAIN_AGENT_USE_MOCK": "true",
            "CHAT_RATE_LIMIT_PER_MINUTE": "10000",
            "CHAT_WS_MAX_FRAMES_PER_SECOND": "10000",
            "CHAT_WS_FRAME_BURST": "100000",
            "CHAT_LOG_STREAM_NAME": f"BENCH_CHAT_{self.token}",
            "CHAT_SUBJECT_PREFIX": f"bench{self.token}.chat",
            "JOB_STREAM_NAME": f"BENCH_JOBS_{self.token}",
            "JOB_SUBJECT_PREFIX": f"bench{self.token}.jobs",
            "JOB_ORCHESTRATOR_IN_PROCESS": "true",
            "ACTOR_SHUTDOWN_TIMEOUT_SECONDS": "5",
        }

    async def migrate(self) -> None:
        """``python -m exobrain migrate`` on the database, before any server starts."""
        with (self.root / "migrate.log").open("wb") as output:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "exobrain",
                "migrate",
                cwd=self.root,
                env={**self._env, "ASSISTANT_DB_DSN": self.dsn},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            code = await process.wait()
        if code != 0:
            raise RuntimeError(f"exobrain migrate exited with {code}: see {self.root}/migrate.log")

    def launch(
        self, name: str, *, workers: int = 1, settings: Mapping[str, str] | None = None
    ) -> Server:
        """Start ``exobrain serve --workers N``; ``settings`` override the run's for it."""
        directory = self.root / f"{len(self.servers) + 1:02d}-{name}"
        directory.mkdir()
        env = {
            **self._env,
            **self.settings,
            "EXOBRAIN_STATE_DIR": str(directory / "state"),
            **(settings or {}),
        }
        command = [sys.executable, "-m", "exobrain", "serve", "--workers", str(workers)]
        with (
            (directory / "stdout.log").open("wb") as stdout,
            (directory / "stderr.log").open("wb") as stderr,
        ):
            process = subprocess.Popen(
                command,
                cwd=directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,  # a Ctrl-C of the benchmark reaches us, not them
                preexec_fn=_die_with_parent(),  # noqa: PLW1509 - only prctl, resolved before fork
            )
        server = Server(name, directory, process)
        self.servers.append(server)
        return server

    async def start(
        self, session: aiohttp.ClientSession, *names: str, workers: int = 1, **settings: str
    ) -> list[Server]:
        """Start one server per name, together; return once every one is ready."""
        servers = [self.launch(name, workers=workers, settings=settings) for name in names]
        await self.ready(session, *servers)
        return servers

    async def ready(self, session: aiohttp.ClientSession, *servers: Server) -> None:
        """Wait until every one of ``servers`` is ready; name them and their processes."""
        await asyncio.gather(*(server.ready(session) for server in servers))
        for server in servers:
            pids = ", ".join(str(p.pid) for p in server.processes())
            print(f"cluster: {server.name} at {server.url}, pids {pids}")

    async def stop(self, *servers: Server) -> None:
        await asyncio.gather(*(server.stop() for server in servers))

    async def close(self) -> None:
        """Stop every server, then delete the run's JetStream streams and Redis keys."""
        await self.stop(*self.servers)
        with contextlib.suppress(OSError, nats.errors.Error, TimeoutError):
            client = await nats.connect(self.nats_url, connect_timeout=5, max_reconnect_attempts=0)
            try:
                jetstream = client.jetstream()
                for stream in (
                    self.settings["CHAT_LOG_STREAM_NAME"],
                    self.settings["JOB_STREAM_NAME"],
                ):
                    with contextlib.suppress(NotFoundError):
                        await jetstream.delete_stream(stream)
            finally:
                await client.close()
        with contextlib.suppress(OSError, redis.RedisError):
            store = redis.from_url(self.redis_url)
            try:
                pattern = f"bench:{self.token}:*"
                keys = [key async for key in store.scan_iter(match=pattern, count=1000)]
                for start in range(0, len(keys), 1000):
                    await store.delete(*keys[start : start + 1000])
            finally:
                await store.aclose()


# -- CPU accounting -----------------------------------------------------------------------


class CpuMeter:
    """CPU seconds each party spent over a stretch of time: this client, the servers,
    PostgreSQL's backends of the benchmark's database, NATS, Redis, and the machine.

    NATS, Redis and the machine are shared with whatever else runs here; "other" is
    the machine's busy time that none of the parties named accounts for.
    """

    def __init__(self, servers: list[Server], database: str) -> None:
        self._servers, self._database = servers, database
        self.cpu: dict[str, float] = {}
        self.wall = 0.0
        self.busy = 0.0
        #: CPU seconds of the busiest server process (a worker that got more connections).
        self.busiest_server = 0.0
        self.load = os.getloadavg()[0]

    def _parties(self) -> dict[str, list[psutil.Process]]:
        parties: dict[str, list[psutil.Process]] = {
            "client": [psutil.Process()],
            "servers": [p for server in self._servers for p in server.processes()],
            "postgres": [],
            "nats": [],
            "redis": [],
        }
        for process in psutil.process_iter(["name", "cmdline"]):
            name = process.info["name"] or ""
            command = " ".join(process.info["cmdline"] or ())
            if name.startswith("postgres") and f" {self._database} " in command:
                parties["postgres"].append(process)
            elif name.startswith("nats-server"):
                parties["nats"].append(process)
            elif name.startswith("redis-server"):
                parties["redis"].append(process)
        return parties

    @staticmethod
    def _seconds(processes: list[psutil.Process]) -> dict[int, float]:
        found = {}
        for process in processes:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                found[process.pid] = times.user + times.system
        return found

    @contextlib.contextmanager
    def measure(self) -> Iterator[CpuMeter]:
        before = {party: self._seconds(ps) for party, ps in self._parties().items()}
        machine, started = psutil.cpu_times(), time.perf_counter()
        yield self
        self.wall = time.perf_counter() - started
        after_machine = psutil.cpu_times()
        self.busy = _busy(after_machine) - _busy(machine)
        for party, processes in self._parties().items():
            start = before.get(party, {})
            spent = {pid: s - start.get(pid, 0.0) for pid, s in self._seconds(processes).items()}
            self.cpu[party] = sum(spent.values())
            if party == "servers":
                self.busiest_server = max(spent.values(), default=0.0)

    def notes(self, turns: int) -> dict[str, float]:
        """CPU milliseconds per turn by party; the machine's busy share and load."""
        per_turn = {f"CPU ms/turn {party}": 1000 * s / turns for party, s in self.cpu.items()}
        other = self.busy - sum(self.cpu.values())
        return {
            **per_turn,
            "CPU ms/turn other": 1000 * other / turns,
            "busiest worker (% of servers' CPU)": 100
            * self.busiest_server
            / max(self.cpu["servers"], 1e-9),
            "machine busy (% of all cores)": 100 * self.busy / (self.wall * (os.cpu_count() or 1)),
            "load average 1 min before": self.load,
        }


async def _forwarded(server: Server, workers: int) -> float:
    """Chat commands the server's workers forwarded to another owner, summed over workers.

    Each worker is asked over a connection of its own (``SO_REUSEPORT`` picks the worker
    per connection), until every worker answered. Users that stick to one connection are
    owned where they send, so this should stay near 0: it checks the run was realistic.
    """
    counts: dict[int, float] = {}
    for _ in range(50):
        if len(counts) == workers:
            break
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            async with session.get(f"{server.url}/api/ops/actors") as response:
                pid = (await response.json())["instance"]["pid"]
            async with session.get(f"{server.url}/metrics") as response:
                text = await response.text()
        counts[pid] = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("chat_forwarded_commands_total{")
        )
    return sum(counts.values())


def _busy(times: Any) -> float:
    """Busy CPU seconds since boot, as psutil counts them (Linux's guest time is in user)."""
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    return float(total - times.idle - getattr(times, "iowait", 0.0))


# -- 1. throughput ------------------------------------------------------------------------


async def _throughput(deployment: Deployment, session: aiohttp.ClientSession) -> list[Summary]:
    results: dict[tuple[str, int], list[Summary]] = {}
    database = urlsplit(deployment.dsn).path.lstrip("/")
    for workers in (1, 2):
        [server] = await deployment.start(session, f"workers{workers}", workers=workers)
        for transport in ("chat", "chat-ws"):
            forwarded = await _forwarded(server, workers)
            meter = CpuMeter([server], database)
            label, key = f"cluster {transport} w{workers}", f"cluster.{transport}.w{workers}"
            if transport == "chat":
                summaries = await rest_workloads(
                    server.url, deployment.dsn, label=label, key=key, around_many=meter.measure
                )
            else:
                summaries = await socket_workloads(
                    session,
                    server.url,
                    deployment.dsn,
                    label=label,
                    key=key,
                    around_many=meter.measure,
                )
            forwarded = await _forwarded(server, workers) - forwarded
            *head, many = summaries
            notes = {
                **many.notes,
                **meter.notes(USERS * TURNS_PER_USER),
                "commands forwarded between workers": forwarded,
            }
            many = replace(many, notes=notes)
            results[transport, workers] = [*head, many]
            print(
                f"{many.name}: {many.per_second:.1f} turns/s, p50 {many.p50_ms:.1f} ms, "
                f"{forwarded:g} commands forwarded between workers"
            )
        await deployment.stop(server)
    ordered: list[Summary] = []
    for transport in ("chat", "chat-ws"):
        one, two = results[transport, 1], results[transport, 2]
        ratio = two[-1].per_second / one[-1].per_second
        print(f"cluster {transport}: {USERS} users' turns/s, 2 workers / 1 worker = {ratio:.2f}x")
        two[-1] = replace(two[-1], notes={**two[-1].notes, "2 workers / 1 worker (x)": ratio})
        ordered += one + two
    return ordered


# -- 2. event lag across instances --------------------------------------------------------


class _SocketLog:
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
        return await asyncio.wait_for(self._future(kind, about), _TURN_TIMEOUT)

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


async def _owned(session: aiohttp.ClientSession, server: Server) -> set[str]:
    async with session.get(f"{server.url}/api/ops/actors") as response:
        body = await response.json()
    return set(body["instance"]["owned_sessions"])


async def _user_ids(dsn: str, emails: list[str]) -> set[str]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT id FROM users WHERE email = ANY($1)", emails)
    finally:
        await connection.close()
    return {str(row["id"]) for row in rows}


async def _event_lag(deployment: Deployment, session: aiohttp.ClientSession) -> list[Summary]:
    pace = str(LAG_WORDS_PER_SECOND)
    a, b = await deployment.start(session, "lag-a", "lag-b", MAIN_AGENT_MOCK_WORDS_PER_SECOND=pace)
    emails = await create_users(deployment.dsn, LAG_USERS)
    headers = await gated(LAG_USERS, lambda n: login(session, a.url, emails[n]))
    logs: dict[Server, list[_SocketLog]] = {}
    try:
        for server in (a, b):
            url = server.url.replace("http", "ws", 1) + "/api/chat/ws"
            sockets = [await session.ws_connect(url, headers=h, max_msg_size=0) for h in headers]
            logs[server] = [_SocketLog(ws) for ws in sockets]
        await asyncio.gather(*(log.ping() for log in logs[a] + logs[b]))

        async def user(n: int) -> None:
            for _ in range(LAG_TURNS):
                stream_id = await logs[a][n].send()
                await logs[a][n].wait("done", stream_id)
                await logs[b][n].wait("done", stream_id)

        started = time.perf_counter()
        await asyncio.gather(*(user(n) for n in range(LAG_USERS)))
        seconds = time.perf_counter() - started
        users = await _user_ids(deployment.dsn, emails)
        on_a, on_b = await _owned(session, a), await _owned(session, b)
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


@dataclass
class _Sse:
    """``GET /api/chat/stream/{id}`` read as it arrives: (seq, event, data, arrival)."""

    events: list[tuple[int, str, dict[str, Any], float]] = field(default_factory=list)
    status: int = 0

    async def read(
        self, session: aiohttp.ClientSession, url: str, headers: Mapping[str, str]
    ) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with session.get(url, headers=headers, timeout=timeout) as response:
            self.status = response.status
            if response.status != 200:
                raise RuntimeError(f"GET {url}: {response.status} {await response.text()}")
            fields: dict[str, str] = {}
            async for raw in response.content:
                line = raw.decode().rstrip("\r\n")
                if line and not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    fields[name] = value
                elif "data" in fields:
                    event = fields.get("event", "message")
                    data = orjson.loads(fields["data"])
                    self.events.append((int(fields["id"]), event, data, time.perf_counter()))
                    if event == "done":
                        return
                    fields = {}
        raise RuntimeError(f"{url} ended without done")

    def chunks(self) -> int:
        return sum(event == "message_chunk" for _, event, _, _ in self.events)


async def _post(
    session: aiohttp.ClientSession, server: Server, headers: Mapping[str, str], cid: str
) -> tuple[str, int]:
    """Send until accepted, retrying 429, 503 and broken connections with the same
    ``client_message_id``; the stream id and the retries it took."""
    body = {"message": "Hello again", "client_message_id": cid}
    deadline, retries = time.monotonic() + _TURN_TIMEOUT, 0
    while True:
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            async with session.post(
                f"{server.url}/api/chat/message", json=body, headers=headers
            ) as response:
                if response.status == 200:
                    return str((await response.json())["stream_id"]), retries
                if response.status not in (429, 503):
                    raise RuntimeError(f"POST refused: {response.status} {await response.text()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"POST not accepted in {_TURN_TIMEOUT:g} s")
        retries += 1
        await asyncio.sleep(0.1)


async def _follow(
    session: aiohttp.ClientSession, server: Server, headers: Mapping[str, str], stream_id: str
) -> _Sse:
    sse = _Sse()
    await asyncio.wait_for(
        sse.read(session, f"{server.url}/api/chat/stream/{stream_id}", headers), _TURN_TIMEOUT
    )
    return sse


@dataclass(frozen=True, slots=True)
class _Trial:
    done: float  # kill → the cut-short stream's done on B
    error_first: bool  # an error event came before that done
    accepted: float  # kill → the next message accepted through B
    retries: int
    next_done: float  # kill → the next message's done on B
    later_done: float  # kill → the done of another user's message, sent LATER_SEND s after


async def _turn_after_kill(
    session: aiohttp.ClientSession, b: Server, headers: Mapping[str, str], killed: float
) -> tuple[float, int, float]:
    """A message through B once A is dead: (accepted, retries, its done), from the kill."""
    stream_id, retries = await _post(session, b, headers, str(uuid.uuid4()))
    accepted = time.perf_counter() - killed
    answer = await _follow(session, b, headers, stream_id)
    return accepted, retries, answer.events[-1][3] - killed


async def _one_failover(
    deployment: Deployment, session: aiohttp.ClientSession, ttl: float, replies: Path
) -> _Trial:
    """A owns two users: one in a long turn that B follows, one idle. A is killed; the
    first user's next message goes through B at once, the other's LATER_SEND s later."""
    common = {
        "CHAT_LEASE_TTL_SECONDS": f"{ttl:g}",
        "MAIN_AGENT_MOCK_WORDS_PER_SECOND": str(FAILOVER_WORDS_PER_SECOND),
    }
    a, b = (
        deployment.launch(
            f"failover{ttl:g}-{name}",
            settings={**common, "MAIN_AGENT_MOCK_MESSAGES_FILE": str(replies / f"{name}.md")},
        )
        for name in ("a", "b")
    )
    cleanup: list[asyncio.Task[Any]] = []
    try:
        await deployment.ready(session, a, b)
        emails = await create_users(deployment.dsn, 2)
        headers = [await login(session, a.url, email) for email in emails]
        warm_up, _ = await _post(session, a, headers[0], str(uuid.uuid4()))
        await _follow(session, a, headers[0], warm_up)  # A's replies: short, then long
        stream_id, _ = await _post(session, a, headers[0], str(uuid.uuid4()))
        on_b = _Sse()
        url = f"{b.url}/api/chat/stream/{stream_id}"
        following = asyncio.create_task(asyncio.wait_for(on_b.read(session, url, headers[0]), 120))
        cleanup.append(following)
        deadline = time.monotonic() + 10
        while on_b.chunks() < FAILOVER_SEEN:
            if following.done() or time.monotonic() > deadline:
                await following
                raise RuntimeError(f"B saw {on_b.chunks()} chunks of the turn")
            await asyncio.sleep(0.005)
        warm_up, _ = await _post(session, a, headers[1], str(uuid.uuid4()))
        await _follow(session, a, headers[1], warm_up)  # short again
        if not await _user_ids(deployment.dsn, emails) <= await _owned(session, a):
            raise RuntimeError("A does not own both users after their turns")
        killed = time.perf_counter()
        a.kill()
        at_once = asyncio.create_task(_turn_after_kill(session, b, headers[0], killed))
        cleanup.append(at_once)
        await asyncio.sleep(LATER_SEND)
        _, _, later_done = await _turn_after_kill(session, b, headers[1], killed)
        accepted, retries, next_done = await at_once
        await following
    finally:
        for task in cleanup:
            task.cancel()
        await deployment.stop(a, b)
    names = [event for _, event, _, _ in on_b.events]
    return _Trial(
        done=on_b.events[-1][3] - killed,
        error_first=len(names) > 1 and names[-2] == "error",
        accepted=accepted,
        retries=retries,
        next_done=next_done,
        later_done=later_done,
    )


async def _failover(deployment: Deployment, session: aiohttp.ClientSession) -> list[Summary]:
    replies = deployment.root / "replies"
    replies.mkdir()
    (replies / "a.md").write_text(SEPARATOR.join([SHORT_REPLY, LONG_REPLY]) + "\n")
    (replies / "b.md").write_text(SHORT_REPLY + "\n")
    results = []
    for ttl in FAILOVER_TTLS:
        trials: list[_Trial] = []
        failures = 0
        for n in range(1, FAILOVER_TRIALS + 1):
            try:
                trial = await _one_failover(deployment, session, ttl, replies)
            except (RuntimeError, TimeoutError, aiohttp.ClientError) as exc:
                failures += 1
                print(f"cluster fail-over TTL {ttl:g} s trial {n}: failed: {exc!r}")
                continue
            trials.append(trial)
            print(
                f"cluster fail-over TTL {ttl:g} s trial {n}: kill → done on B {trial.done:.2f} s"
                f" ({'error, then done' if trial.error_first else 'NO error before done'});"
                f" next message through B at once: accepted {trial.accepted:.2f} s"
                f" ({trial.retries} retries), done {trial.next_done:.2f} s;"
                f" another user's {LATER_SEND:g} s after the kill: done {trial.later_done:.2f} s"
            )
        name, key = f"cluster fail-over TTL {ttl:g}s", f"cluster.failover.ttl{ttl:g}"
        accepted = statistics.median([t.accepted for t in trials] or [math.nan])
        missing_error = sum(not t.error_first for t in trials)
        results += [
            _trials(
                f"{name} kill->done on B",
                f"{key}.done",
                [t.done for t in trials],
                errors=failures + missing_error,
            ),
            _trials(
                f"{name} kill->next done",
                f"{key}.next_done",
                [t.next_done for t in trials],
                errors=failures,
                notes={
                    "accepted after kill, median (s)": accepted,
                    "POST retries (503)": sum(t.retries for t in trials),
                },
            ),
            _trials(
                f"{name} kill->other user done (+{LATER_SEND:g}s)",
                f"{key}.later_done",
                [t.later_done for t in trials],
                errors=failures,
            ),
        ]
    return results


def _trials(
    name: str, key: str, values: list[float], *, errors: int, notes: dict[str, float] | None = None
) -> Summary:
    """Trials' durations (seconds) as a summary: median as p50, and each trial as a note."""
    each = {f"trial {n} (s)": value for n, value in enumerate(values, 1)}
    return summarize(
        name,
        values,
        concurrency=1,
        seconds=sum(values),
        errors=errors,
        notes={**each, **(notes or {})},
        key=key,
    )


# -- the benchmark ------------------------------------------------------------------------


@benchmark("cluster")
async def cluster(session: aiohttp.ClientSession, options: Options) -> list[Summary]:
    """Throughput with 1 and 2 workers, event lag across instances, fail-over after kill -9."""
    if options.dsn is None:
        raise SystemExit("the cluster benchmark needs --dsn (a database it may fill)")
    root = Path(tempfile.mkdtemp(prefix="exobrain-bench-cluster-"))
    deployment = Deployment(
        root,
        options.dsn,
        os.environ.get("EXOBRAIN_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        os.environ.get("EXOBRAIN_NATS_URL", "nats://127.0.0.1:4222"),
    )
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"cluster: {psutil.cpu_count()} cores, load average {load}; servers' files in {root}")
    results: list[Summary] = []
    phases = {"throughput": _throughput, "event_lag": _event_lag, "failover": _failover}
    try:
        await deployment.migrate()
        for phase, run in phases.items():
            try:
                results += await run(deployment, session)
            except (RuntimeError, TimeoutError, OSError, aiohttp.ClientError) as exc:
                print(f"cluster: {phase} failed: {exc!r}", file=sys.stderr)
                await deployment.stop(*deployment.servers)  # none may weigh on the next phase
                failed = f"cluster {phase} FAILED"
                key = f"cluster.{phase}"
                results.append(summarize(failed, [], concurrency=0, seconds=0, errors=1, key=key))
    except BaseException:
        print(f"cluster: failed; the servers' output is in {root}", file=sys.stderr)
        raise
    finally:
        await deployment.close()
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"cluster: load average at the end {load}")
    if any(summary.errors for summary in results):
        print(f"cluster: errors; the servers' output is in {root}", file=sys.stderr)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return results
