"""Servers the cluster benchmark starts itself, and what it reads off them."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import nats
import nats.errors
import psutil
import redis.asyncio as redis
from nats.js.errors import NotFoundError

from exobrain.config import Settings

REPO = Path(__file__).resolve().parents[2]
_SERVING = re.compile(r"exobrain is serving at (http://\S+)")

_READY_TIMEOUT = 90.0
_STOP_GRACE = 25.0  # ACTOR_SHUTDOWN_TIMEOUT_SECONDS below, plus closing connections
TURN_TIMEOUT = 60.0

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


async def forwarded_commands(server: Server, workers: int) -> float:
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


async def owned(session: aiohttp.ClientSession, server: Server) -> set[str]:
    async with session.get(f"{server.url}/api/ops/actors") as response:
        body = await response.json()
    return set(body["instance"]["owned_sessions"])


async def user_ids(dsn: str, emails: list[str]) -> set[str]:
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch("SELECT id FROM users WHERE email = ANY($1)", emails)
    finally:
        await connection.close()
    return {str(row["id"]) for row in rows}
