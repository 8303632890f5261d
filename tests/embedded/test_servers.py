"""Embedded servers: leftovers of a crashed run are ended, strangers are never touched."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest
import redis

from exobrain.embedded import EmbeddedRedis

pytestmark = pytest.mark.fault


def test_a_leftover_server_in_the_same_directory_is_ended_first(tmp_path: Path) -> None:
    crashed_run = EmbeddedRedis(tmp_path, durable=False).start()
    orphan, crashed_run._process = (
        crashed_run._process,
        None,
    )  # its parent "died" without stopping it
    assert orphan is not None

    with EmbeddedRedis(tmp_path, durable=False) as server:
        assert orphan.wait(timeout=5) is not None  # already ended by the new start
        assert redis.Redis.from_url(server.url).ping()


def test_a_recycled_pid_in_a_stale_pid_file_is_left_alone(tmp_path: Path) -> None:
    (tmp_path / "redis.pid").write_text(f"{os.getpid()} 12345.0")  # our pid, not our start time
    with EmbeddedRedis(tmp_path, durable=False) as server:
        assert redis.Redis.from_url(server.url).ping()
    assert psutil.Process().is_running()


def test_stop_is_graceful_and_idempotent(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, durable=False).start()
    process = server._process
    assert process is not None
    server.stop()
    assert process.returncode == 0  # SIGTERM: redis saved nothing and exited cleanly
    server.stop()
    assert not (tmp_path / "redis.pid").exists()
