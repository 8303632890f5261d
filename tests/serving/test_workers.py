"""`exobrain serve --workers N` as a user runs it: N worker processes on one port, supervised.

Each test starts the real command on the session's servers (a fresh database
each) and watches it from outside: its output, its child processes (psutil),
and who owns the connections it accepts.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import nats
import psutil
import pytest
from nats.js.errors import NotFoundError

from exobrain import cli

T = TypeVar("T")

#: Generous for a loaded 2-core machine; every wait returns as soon as its condition holds.
DEADLINE = 30.0


def wait_for(condition: Callable[[], T | None], what: str, timeout: float = DEADLINE) -> T:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)
    return value


def gone(process: psutil.Process) -> bool:
    """Exited (a zombie whose new parent does not reap it counts: it runs nothing)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class Served:
    """`exobrain serve|dev --workers N` in a subprocess; its output goes to files, so a
    chatty worker can never block on a full pipe."""

    def __init__(self, directory: Path, environment: dict[str, str], command: list[str]) -> None:
        self.directory = directory
        self.stdout, self.stderr = directory / "stdout.txt", directory / "stderr.txt"
        with self.stdout.open("w") as out, self.stderr.open("w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "exobrain", *command],
                env=environment,
                cwd=directory,  # its own .env, or none
                stdout=out,
                stderr=err,
            )
        self.pid = self.process.pid

    def log(self) -> str:
        return self.stderr.read_text()

    def output(self) -> str:
        return self.stdout.read_text()

    def wait_serving(self) -> tuple[str, int]:
        def address() -> tuple[str, int] | None:
            if self.process.poll() is not None:
                raise AssertionError(f"exited with {self.process.returncode}:\n{self.log()}")
            found = re.search(r"^exobrain is serving at http://(\S+):(\d+)$", self.output(), re.M)
            return (found.group(1), int(found.group(2))) if found else None

        return wait_for(address, "the serving line")

    def workers(self) -> list[psutil.Process]:
        """The live worker processes (`dev`'s embedded servers are children too)."""
        return [
            child
            for child in psutil.Process(self.pid).children()
            if not gone(child) and child.cmdline()[-3:] == ["serve", "--workers", "1"]
        ]

    def wait_exit(self) -> int:
        return self.process.wait(timeout=DEADLINE)


@pytest.fixture
def environment(
    tmp_path: Path,
    database_factory: Callable[[], str],
    redis_url: str,
    chat_log: dict[str, str],
    namespace: str,
) -> dict[str, str]:
    """The caller's environment minus any configuration, plus the session's servers
    (NATS with the session's own chat log stream)."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ASSISTANT_", "EXOBRAIN_", "APP_", "AUTH_", "HTTP_", "LOG_"))
    }
    environment.update((name.upper(), value) for name, value in chat_log.items())
    environment.update(
        {
            "ASSISTANT_DB_DSN": database_factory(),
            "ASSISTANT_CACHE_REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": f"test:{namespace}:",
            "EXOBRAIN_STATE_DIR": str(tmp_path / "state"),
            "HTTP_PORT": "0",
            "ACCESS_LOG": "false",
            "LOG_LEVEL": "INFO",
            "STARTUP_DEPENDENCY_TIMEOUT_SECONDS": "10",
        }
    )
    return environment


@pytest.fixture
def start(tmp_path: Path, environment: dict[str, str]) -> Iterator[Callable[..., Served]]:
    """Starts the command; afterwards kills whatever of it still runs."""
    started: list[Served] = []

    def run(*command: str, **overrides: str) -> Served:
        served = Served(tmp_path, environment | overrides, list(command))
        started.append(served)
        return served

    yield run
    for served in started:
        workers = served.workers() if served.process.poll() is None else []
        served.process.kill()
        served.process.wait()
        for worker in workers:
            if not gone(worker):
                worker.kill()


def owners(port: int, workers: list[psutil.Process]) -> dict[int, int]:
    """Which worker holds the server side of each accepted connection: client port → pid."""
    found = {}
    for worker in workers:
        for connection in worker.net_connections(kind="tcp"):
            if connection.status == psutil.CONN_ESTABLISHED and connection.laddr.port == port:
                found[connection.raddr.port] = worker.pid
    return found


def healthz(host: str, port: int) -> http.client.HTTPConnection:
    """A fresh connection that got 200 from /healthz, left open (kept alive)."""
    connection = http.client.HTTPConnection(host, port, timeout=10)
    connection.request("GET", "/healthz")
    response = connection.getresponse()
    assert response.status == 200
    response.read()
    return connection


def answering_pids(host: str, port: int, workers: list[psutil.Process], count: int) -> set[int]:
    """The workers that answered ``count`` fresh connections."""
    connections = [healthz(host, port) for _ in range(count)]
    try:
        held = owners(port, workers)
        clients = [connection.sock.getsockname()[1] for connection in connections]
        assert all(client in held for client in clients), (clients, held)
        return {held[client] for client in clients}
    finally:
        for connection in connections:
            connection.close()


def test_every_worker_serves_on_the_one_port(start: Callable[..., Served]) -> None:
    served = start("serve", "--workers", "2")
    host, port = served.wait_serving()
    workers = served.workers()
    assert len(workers) == 2

    # The kernel spreads connections by a hash of their addresses: with 40 of them,
    # both workers answer unless something is wrong (odds 2 in 2^40).
    assert answering_pids(host, port, workers, 40) == {worker.pid for worker in workers}
    assert served.output().count("exobrain is serving at") == 1
    assert "2 workers serving" in served.log()
    assert "Qdrant local mode is held by worker 0" in served.log()


def test_a_killed_worker_is_restarted_while_the_port_keeps_answering(
    start: Callable[..., Served],
) -> None:
    served = start("serve", "--workers", "2")
    host, port = served.wait_serving()
    victim, survivor = served.workers()
    victim.kill()
    wait_for(lambda: gone(victim), "the killed worker to end")

    def ten_answered_in_a_row() -> bool:
        """A connection the kernel had queued to the dying worker is reset (Linux does so
        without net.ipv4.tcp_migrate_req); connections made after it are all answered."""
        try:
            for _ in range(10):
                healthz(host, port).close()
        except ConnectionResetError:
            return False
        return True

    wait_for(ten_answered_in_a_row, "ten fresh connections answered in a row")

    def replacement() -> psutil.Process | None:
        for worker in served.workers():
            listening = any(
                connection.status == psutil.CONN_LISTEN and connection.laddr.port == port
                for connection in worker.net_connections(kind="tcp")
            )
            if worker.pid not in (victim.pid, survivor.pid) and listening:
                return worker
        return None

    new = wait_for(replacement, "a replacement worker listening")
    assert f"(pid {victim.pid}) ended with exit code -9 (SIGKILL); restarting it" in served.log()
    wait_for(
        lambda: new.pid in answering_pids(host, port, [new, survivor], 10),
        "the replacement to answer",
    )
    assert survivor.is_running()
    assert served.process.poll() is None


def test_sigterm_stops_every_worker_and_exits_0(start: Callable[..., Served]) -> None:
    served = start("serve", "--workers", "2")
    served.wait_serving()
    workers = served.workers()
    served.process.send_signal(signal.SIGTERM)
    assert served.wait_exit() == 0
    assert all(gone(worker) for worker in workers)
    assert "every worker stopped" in served.log()


def test_workers_do_not_outlive_a_killed_supervisor(start: Callable[..., Served]) -> None:
    served = start("serve", "--workers", "2")
    served.wait_serving()
    workers = served.workers()
    served.process.kill()
    served.wait_exit()
    wait_for(lambda: all(gone(worker) for worker in workers), "the orphaned workers to end")


def test_a_configuration_error_stops_at_once_without_starting_workers(
    start: Callable[..., Served],
) -> None:
    served = start("serve", "--workers", "2", APP_ENV="production", AUTH_JWT_SECRET="short")
    assert served.wait_exit() == 2
    assert "configuration error: AUTH_JWT_SECRET" in served.log()
    assert "worker 0 started" not in served.log()


def test_a_worker_finding_a_configuration_error_stops_everything(
    start: Callable[..., Served], tmp_path: Path
) -> None:
    """The environment is checked before any worker starts, but `.env` can change under a
    running service: the restarted worker finds the error, and no restart can fix it."""
    served = start("serve", "--workers", "2")
    served.wait_serving()
    workers = served.workers()
    (tmp_path / ".env").write_text("APP_ENV=production\nAUTH_JWT_SECRET=short\n")
    workers[0].kill()

    assert served.wait_exit() == 2
    log = served.log()
    assert "configuration error: AUTH_JWT_SECRET" in log
    assert "exited with code 2, a configuration error: stopping" in log
    assert log.count(" started (pid ") == 3  # two, then the one restart
    assert all(gone(worker) for worker in workers)


def test_workers_that_cannot_start_stop_everything(start: Callable[..., Served]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as stranger:  # holds the port, no SO_REUSEPORT
        port = stranger.getsockname()[1]
        served = start("serve", "--workers", "2", HTTP_PORT=str(port))
        assert served.wait_exit() == 1
    log = served.log()
    assert "address already in use" in log
    assert "2 workers in a row ended before listening" in log


@pytest.mark.fault
def test_dev_workers_share_its_embedded_servers(
    start: Callable[..., Served], environment: dict[str, str], namespace: str
) -> None:
    """`dev` embeds what is not configured (here Redis) and hands its URL to the workers,
    with the in-process orchestrator it turns on (else `/readyz` would miss one)."""
    jobs = f"JOBS_{namespace}_workers"
    del environment["ASSISTANT_CACHE_REDIS_URL"]  # the environment `start` runs with
    served = start("dev", "--workers", "2", JOB_STREAM_NAME=jobs, JOB_SUBJECT_PREFIX=jobs.lower())
    try:
        host, port = served.wait_serving()
        assert "password123" in served.output().splitlines()[-1]
        for _ in range(6):  # every worker in turn, most likely
            connection = http.client.HTTPConnection(host, port, timeout=10)
            connection.request("GET", "/readyz")
            response = connection.getresponse()
            assert response.status == 200, response.read()
            connection.close()
        assert len(served.workers()) == 2
        served.process.send_signal(signal.SIGTERM)
        assert served.wait_exit() == 0
        assert "embedded redis stopped" in served.log()
    finally:
        asyncio.run(delete_stream(environment["EXOBRAIN_NATS_URL"], jobs))


async def delete_stream(url: str, name: str) -> None:
    client = await nats.connect(url)
    try:
        await client.jetstream().delete_stream(name)
    except NotFoundError:
        pass
    finally:
        await client.close()


@pytest.mark.parametrize(
    "argv",
    [["serve", "--workers", "0"], ["dev", "--workers", "two"], ["migrate", "--workers", "2"]],
)
def test_workers_is_a_positive_count_for_serve_and_dev_only(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
