"""Shared fixtures: real PostgreSQL, Redis and NATS for every test session.

Servers named by ``EXOBRAIN_TEST_POSTGRES_URL``, ``EXOBRAIN_TEST_REDIS_URL`` and
``EXOBRAIN_TEST_NATS_URL`` are used when set (CI machines run all three);
otherwise the session starts embedded ones. Either way the session works in
its own database, Redis key prefix and JetStream names, and removes them at
the end. Fault tests get private embedded servers they may stop and restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats
import nats.js.errors
import pykka
import pytest
import redis
from orchestrator.support import jobs_stream

from exobrain.config import Settings
from exobrain.embedded import EmbeddedNats, EmbeddedPostgres, EmbeddedRedis, EmbeddedServer

_OWN_BASETEMP = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """Each session's temporary files under a directory of its own, not pytest-of-<user>.

    Embedded PostgreSQL runs as another user when the tests run as root, so the directories
    above its data must stay traversable; a concurrent pytest session resets
    ``pytest-of-<user>`` to 0700 whenever it starts, which would lock that user out.
    """
    if config.option.basetemp is None:
        config.option.basetemp = tempfile.mkdtemp(prefix="exobrain-tests-")
        config.stash[_OWN_BASETEMP] = Path(config.option.basetemp)


def pytest_unconfigure(config: pytest.Config) -> None:
    if (own := config.stash.get(_OWN_BASETEMP, None)) is not None:
        shutil.rmtree(own, ignore_errors=True)


@pytest.fixture(autouse=True)
def stop_all_actors() -> Iterator[None]:
    """A test that fails half-way must not leave actor threads behind: they would keep
    the test process alive after the last test (they are not daemons, by design)."""
    yield
    pykka.ActorRegistry.stop_all(block=True, timeout=10)


@pytest.fixture(scope="session")
def namespace() -> str:
    """A token unique to this test session, for database, key and stream names."""
    return secrets.token_hex(4)


@pytest.fixture(scope="session")
def postgres_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if url := os.environ.get("EXOBRAIN_TEST_POSTGRES_URL"):
        yield url
        return
    root = tmp_path_factory.mktemp("postgres")
    with EmbeddedPostgres(root, durable=False) as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory, namespace: str) -> Iterator[str]:
    if url := os.environ.get("EXOBRAIN_TEST_REDIS_URL"):
        yield url
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(match=f"test:{namespace}:*", count=1000):
            client.delete(key)
        client.close()
        return
    with EmbeddedRedis(tmp_path_factory.mktemp("redis"), durable=False) as server:
        yield server.url


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if url := os.environ.get("EXOBRAIN_TEST_NATS_URL"):
        yield url
        return
    with EmbeddedNats(tmp_path_factory.mktemp("nats")) as server:
        yield server.url


def with_database(server_url: str, database: str) -> str:
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def database_factory(postgres_server_url: str, namespace: str) -> Iterator[Callable[[], str]]:
    """Creates fresh, empty databases on the session's server; drops them all at the end."""
    created: list[str] = []

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(postgres_server_url)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    def run(statement: str) -> None:
        # In a thread of its own: callers may be inside a running event loop.
        with ThreadPoolExecutor(max_workers=1) as executor:
            executor.submit(asyncio.run, admin(statement)).result()

    def create() -> str:
        name = f"exobrain_test_{namespace}_{len(created)}"
        run(f'CREATE DATABASE "{name}"')
        created.append(name)
        return with_database(postgres_server_url, name)

    yield create
    for name in created:
        run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(database_factory: Callable[[], str]) -> str:
    """The session's shared database (the app migrates it on first start)."""
    return database_factory()


@pytest.fixture(scope="session")
def chat_log(nats_url: str, namespace: str) -> Iterator[dict[str, str]]:
    """Settings for the session's NATS and its own chat log stream, deleted at the end."""
    names = {
        "exobrain_nats_url": nats_url,
        "chat_log_stream_name": f"CHAT_{namespace}",
        "chat_subject_prefix": f"t{namespace}.chat",
    }
    yield names

    async def delete() -> None:
        client = await nats.connect(nats_url)
        try:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await client.jetstream().delete_stream(names["chat_log_stream_name"])
        finally:
            await client.close()

    asyncio.run(delete())


@pytest.fixture(scope="session")
def settings_factory(
    database_url: str, redis_url: str, namespace: str, chat_log: dict[str, str]
) -> Callable[..., Settings]:
    """Settings for an app on the session's servers with its state in ``state_dir``;
    keyword arguments override. For fixtures that outlive a test; tests use ``make_settings``."""

    def make(state_dir: Path, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "app_env": "local",
            "access_log": False,
            "exobrain_state_dir": state_dir,
            "assistant_db_dsn": database_url,
            "assistant_cache_redis_url": redis_url,
            "redis_key_prefix": f"test:{namespace}:",
            "startup_dependency_timeout_seconds": 10,
            # A knowledge update waits for the orchestrator as long as a test may: whether it
            # answers 200 or 202 must not depend on the machine's speed.
            "knowledge_update_wait_seconds": 60,
            **chat_log,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return make


@pytest.fixture
def make_settings(
    tmp_path: Path, settings_factory: Callable[..., Settings]
) -> Callable[..., Settings]:
    """Settings for an app on the session's servers; keyword arguments override."""
    return functools.partial(settings_factory, tmp_path / "state")


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
async def orchestrated(
    make_settings: Callable[..., Settings], nats_url: str, namespace: str
) -> AsyncIterator[Callable[..., Settings]]:
    """Settings whose job orchestrator runs in-process, on a JetStream stream of its own: every
    dependency the app checks is there, so ``/readyz`` can be green."""
    async with jobs_stream(nats_url, namespace) as stream:
        yield lambda **overrides: make_settings(
            job_orchestrator_in_process=True, **stream.settings, **overrides
        )


@pytest.fixture
def down_address() -> Iterator[str]:
    """``127.0.0.1:<port>`` where nothing listens until a test starts a server there.

    The port stays bound (not listening, so connections are refused) with SO_REUSEPORT, so
    no other bind or outgoing connection can take it meanwhile, while a gRPC server, which
    binds with SO_REUSEPORT too, can. A port merely found free could be handed out again
    (it was: to the test's own HTTP server).
    """
    with socket.socket() as placeholder:
        placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        placeholder.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{placeholder.getsockname()[1]}"


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[Callable[[str], EmbeddedServer]]:
    """Starts private embedded servers (``postgres``, ``redis``, ``nats``) a test may stop."""
    kinds: dict[str, Callable[[Path], EmbeddedServer]] = {
        "postgres": lambda root: EmbeddedPostgres(root, durable=False),
        "redis": lambda root: EmbeddedRedis(root, durable=False),
        "nats": EmbeddedNats,
    }
    started: list[EmbeddedServer] = []

    def start(kind: str) -> EmbeddedServer:
        server = kinds[kind](tmp_path / f"{kind}-{len(started)}").start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()
