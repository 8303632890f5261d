"""Fixtures for the cluster tests: deployments of real ``exobrain serve`` processes.

``make_cluster(...)`` prepares a deployment on the session's servers (a fresh
database unless one is given); the test starts its instances. At teardown every
client is closed, every instance stopped (SIGTERM, then SIGKILL) and the
cluster's JetStream streams deleted; a last-resort finalizer SIGKILLs any process
still alive. A failed test's report carries the tail of every instance's log.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiohttp
import pytest

from .harness import Cluster, Setting

CLUSTERS = pytest.StashKey[list[Cluster]]()

#: Short replies for tests that need no pacing.
DEFAULT_REPLIES = (
    "First canned answer, short and complete.",
    "Second canned answer with a few more words in it.",
)


class MakeCluster(Protocol):
    def __call__(
        self,
        *,
        replies: Sequence[str] = ...,
        database_url: str | None = ...,
        **settings: Setting,
    ) -> Awaitable[Cluster]: ...


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for cluster in item.stash.get(CLUSTERS, []):
            for instance in cluster.instances:
                title = f"{instance.name} (pid {instance.pid}) log, last lines"
                report.sections.append((title, instance.log_tail()))
    return report


@pytest.fixture
def leftover_processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Every instance process started by the test; any still running at the end is killed."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@dataclass(frozen=True, slots=True)
class Servers:
    """The session's servers and names (tests/conftest.py)."""

    database_factory: Callable[[], str]
    redis_url: str
    nats_url: str
    namespace: str


@pytest.fixture(scope="session")
def servers(
    database_factory: Callable[[], str], redis_url: str, nats_url: str, namespace: str
) -> Servers:
    return Servers(database_factory, redis_url, nats_url, namespace)


@pytest.fixture
async def make_cluster(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    servers: Servers,
    leftover_processes: list[subprocess.Popen[bytes]],
) -> AsyncIterator[MakeCluster]:
    clusters: list[Cluster] = []
    request.node.stash[CLUSTERS] = clusters
    async with aiohttp.ClientSession() as session:

        async def make(
            *,
            replies: Sequence[str] = DEFAULT_REPLIES,
            database_url: str | None = None,
            **settings: Setting,
        ) -> Cluster:
            cluster = Cluster(
                tmp_path / f"cluster{len(clusters) + 1}",
                session=session,
                database_url=database_url or servers.database_factory(),
                redis_url=servers.redis_url,
                nats_url=servers.nats_url,
                namespace=servers.namespace,
                replies=replies,
                settings=settings,
                processes=leftover_processes,
            )
            clusters.append(cluster)
            await cluster.prepare()
            return cluster

        try:
            yield make
        finally:
            for cluster in clusters:
                await cluster.close()
