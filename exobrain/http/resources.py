"""One ``cleanup_ctx`` per external resource, each registering its readiness check.

At start-up a resource waits for its server up to
``STARTUP_DEPENDENCY_TIMEOUT_SECONDS`` (servers started together come up in
any order); after that, clients reconnect on their own and ``/readyz`` tells
whether they have.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis.asyncio as redis
from aiohttp import web
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.maint_notifications import MaintNotificationsConfig

from exobrain.config import Settings
from exobrain.serving import worker_index
from exobrain.store import create_pool, migrate

from .health import READINESS

if TYPE_CHECKING:
    from exobrain.knowledge import LazyQdrant

log = logging.getLogger(__name__)

T = TypeVar("T")

SETTINGS = web.AppKey("settings", Settings)
PG_POOL = web.AppKey("pg_pool", asyncpg.Pool)
REDIS = web.AppKey("redis", redis.Redis)
NATS = web.AppKey("nats", NatsClient)
QDRANT: web.AppKey[LazyQdrant] = web.AppKey("qdrant")


def redact(url: object) -> str:
    """``url`` without its password, for logs."""
    parts = urlsplit(str(url))
    if parts.password is None:
        return str(url)
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


async def _when_reachable(what: str, connect: Callable[[], Awaitable[T]], patience: float) -> T:
    """Call ``connect`` until it succeeds or ``patience`` seconds have passed."""
    deadline = time.monotonic() + patience
    delay = 0.1
    while True:
        try:
            return await connect()
        except (OSError, asyncpg.PostgresError, redis.RedisError, NatsError) as exc:
            if time.monotonic() + delay > deadline:
                raise RuntimeError(f"{what} unreachable for {patience:g}s: {exc}") from exc
            log.warning("waiting for %s: %s", what, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def postgres_ctx(app: web.Application) -> AsyncIterator[None]:
    """Apply pending migrations, then open the shared pool."""
    settings = app[SETTINGS]
    dsn = str(settings.assistant_db_dsn)
    wait = settings.startup_dependency_timeout_seconds
    await _when_reachable("PostgreSQL", lambda: migrate(dsn), wait)
    pool = await _when_reachable("PostgreSQL", lambda: create_pool(settings), wait)
    log.info("PostgreSQL at %s", redact(dsn))

    async def check() -> None:
        async with pool.acquire() as connection:
            await connection.fetchval("SELECT 1")

    app[PG_POOL] = pool
    app[READINESS].add("postgres", check)
    yield
    app[READINESS].remove("postgres")
    try:
        await asyncio.wait_for(pool.close(), timeout=10)
    except TimeoutError:
        log.warning("PostgreSQL pool did not close within 10s; terminating its connections")
        pool.terminate()


def redis_client(
    url: str, *, connect_timeout: float, socket_timeout: float, retries: int
) -> redis.Redis:
    """A Redis client that gets over a server restart by itself.

    redis-py 8.1 skips its check-out probe of pooled connections while
    maintenance notifications are on, and they are on by default: a connection
    the restarted server had closed is handed out and its command fails
    (redis/redis-py#4252). They serve managed-Redis failovers; off, the probe
    replaces closed connections before use. A command whose connection fails
    anyway is sent again on a fresh one, ``retries`` times after 50-500 ms (a
    server that is loading its data answers so too). Time-outs are not retried:
    the command may have run, and a refresh-token rotation must not run twice.
    """
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=connect_timeout,
        socket_timeout=socket_timeout,
        socket_keepalive=True,
        health_check_interval=30,
        retry=Retry(
            ExponentialWithJitterBackoff(base=0.05, cap=0.5),
            retries,
            supported_errors=(redis.ConnectionError,),
        ),
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )


async def redis_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    timeout = settings.readiness_timeout_seconds
    client = redis_client(
        str(settings.assistant_cache_redis_url),
        connect_timeout=timeout,
        socket_timeout=max(timeout, 2.0),
        retries=2,
    )
    await _when_reachable("Redis", client.ping, settings.startup_dependency_timeout_seconds)
    log.info("Redis at %s", redact(settings.assistant_cache_redis_url))

    async def check() -> None:
        await client.ping()

    app[REDIS] = client
    app[READINESS].add("redis", check)
    yield
    app[READINESS].remove("redis")
    await client.aclose()


async def nats_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    url = str(settings.exobrain_nats_url)
    client = NatsClient()

    async def on_disconnected() -> None:
        if not client.is_closed:
            log.warning("NATS disconnected; reconnecting")

    async def on_error(exc: Exception) -> None:
        log.warning("NATS error: %s", exc)

    async def connect() -> NatsClient:
        await client.connect(
            url,
            name="exobrain",
            connect_timeout=2,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            disconnected_cb=on_disconnected,
            error_cb=on_error,
        )
        return client

    client = await _when_reachable("NATS", connect, settings.startup_dependency_timeout_seconds)
    jetstream = client.jetstream(timeout=settings.readiness_timeout_seconds)
    log.info("NATS at %s", redact(url))

    async def check() -> None:
        if not client.is_connected:
            raise ConnectionError("not connected")
        await jetstream.account_info()

    app[NATS] = client
    app[READINESS].add("nats", check)
    yield
    app[READINESS].remove("nats")
    await client.close()


async def qdrant_ctx(app: web.Application) -> AsyncIterator[None]:
    """Qdrant at ``EXOBRAIN_QDRANT_URL``, or qdrant-client's local mode in the state dir.

    Local mode admits one process per directory: of ``--workers N``, only
    worker 0 has it; the others run without Qdrant (and without its check).
    Local mode is embedded, so nothing can be unready about it before its first
    use: it is imported and opened then (~45 MB of memory spared until a user
    searches). A server's client is opened now, for its readiness check.
    """
    from exobrain.knowledge import LazyQdrant  # noqa: PLC0415 - the feature's, when on

    settings = app[SETTINGS]
    worker = worker_index()
    qdrant = LazyQdrant(settings)
    if settings.exobrain_qdrant_url is not None:
        qdrant.client()
        log.info("Qdrant at %s", redact(settings.exobrain_qdrant_url))
    elif worker is not None and worker > 0:
        log.info(
            "Qdrant local mode is held by worker 0: worker %d runs without Qdrant "
            "(EXOBRAIN_QDRANT_URL gives every worker one)",
            worker,
        )
        yield
        return
    else:
        log.info(
            "Qdrant in local mode (embedded) at %s, opened on first use",
            settings.exobrain_state_dir / "qdrant",
        )

    async def check() -> None:
        if qdrant.opened:
            await qdrant.client().get_collections()

    app[QDRANT] = qdrant
    app[READINESS].add("qdrant", check)
    yield
    app[READINESS].remove("qdrant")
    await qdrant.close()


async def memgraph_ctx(app: web.Application) -> AsyncIterator[None]:
    """The graph store, only when ``EXOBRAIN_MEMGRAPH_URL`` is set (it has no embedded form)."""
    from neo4j import AsyncGraphDatabase  # noqa: PLC0415 - optional feature, costly import

    url = str(app[SETTINGS].exobrain_memgraph_url)
    driver = AsyncGraphDatabase.driver(url)
    log.info("Memgraph at %s", redact(url))
    app[READINESS].add("memgraph", driver.verify_connectivity)
    yield
    app[READINESS].remove("memgraph")
    await driver.close()
