"""The `exobrain` command as a user runs it: `dev` on a bare machine, stopped every way."""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psutil
import pytest

from exobrain import cli

pytestmark = pytest.mark.fault


def bare_environment(state_dir: Path) -> dict[str, str]:
    """The caller's environment with no infrastructure configured."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ASSISTANT_", "EXOBRAIN_", "APP_", "HTTP_"))
    }
    environment |= {"EXOBRAIN_STATE_DIR": str(state_dir), "HTTP_PORT": "0", "ACCESS_LOG": "false"}
    return environment


def leftovers(state_dir: Path) -> list[psutil.Process]:
    """Processes running from or on the state directory (Redis renames itself, so cwd too)."""
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        places = [*(process.info["cmdline"] or ()), process.info["cwd"] or ""]
        if any(str(state_dir) in place for place in places):
            found.append(process)
    return found


class DevServer:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.process = subprocess.Popen(
            [sys.executable, "-m", "exobrain", "dev"],
            env=bare_environment(state_dir),
            cwd=state_dir.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.lines: list[str] = []
        for line in self.process.stdout:
            self.lines.append(line)
            if match := re.search(r"serving at (http://\S+)", line):
                self.url = match.group(1)
                self.lines.append(self.process.stdout.readline())  # the login banner
                return
        raise AssertionError(f"dev did not start: {self.process.stderr.read()}")  # type: ignore[union-attr]

    def get(self, path: str) -> tuple[int, dict[str, Any]]:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:  # noqa: S310
            return response.status, orjson.loads(response.read())

    def end(self, sig: signal.Signals) -> int:
        self.process.send_signal(sig)
        code = self.process.wait(timeout=60)
        self.process.communicate()
        return code


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "state"
    state.mkdir()
    yield state
    for process in leftovers(state):
        process.kill()


def wait_until_gone(state_dir: Path, timeout: float = 20.0) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while (remaining := leftovers(state_dir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return remaining


def test_dev_runs_on_embedded_servers_and_stops_cleanly(state_dir: Path) -> None:
    server = DevServer(state_dir)
    status, body = server.get("/readyz")
    assert status == 200, body
    assert set(body["checks"]) == {
        "postgres",
        "redis",
        "nats",
        "qdrant",
        "actors",
        "orchestrator",
        "leases",
    }
    assert "test.user@exobrain.local" in server.lines[-1]
    assert "password123" in server.lines[-1]
    running = {process.name() for process in leftovers(state_dir)}
    assert running == {"postgres", "redis-server", "nats-server"}

    assert server.end(signal.SIGTERM) == 0
    assert leftovers(state_dir) == []

    again = DevServer(state_dir)  # same data: migrations and seed find nothing to do
    assert again.get("/readyz")[0] == 200
    assert again.end(signal.SIGINT) == 0
    assert leftovers(state_dir) == []


def test_a_killed_dev_process_leaves_nothing_behind(state_dir: Path) -> None:
    server = DevServer(state_dir)
    assert server.get("/readyz")[0] == 200
    server.end(signal.SIGKILL)
    assert wait_until_gone(state_dir) == []

    again = DevServer(state_dir)
    assert again.get("/readyz")[0] == 200
    assert again.end(signal.SIGTERM) == 0


def test_the_server_raises_its_open_files_limit_for_many_sockets() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    try:
        cli._allow_many_sockets()
        raised, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    expected = 65_536 if hard == resource.RLIM_INFINITY else min(hard, 65_536)
    assert raised == expected
