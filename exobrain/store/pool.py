"""The asyncpg connection pool every reader and writer shares.

Recovery after a server restart needs nothing of ours: the server closes every
connection as it stops, asyncpg marks them closed as soon as the loop reads
that, and the pool opens a fresh one when a closed one is next acquired. What
is ours is how an outage shows: a connection that cannot be opened (refused,
or not within ``ASSISTANT_DB_CONNECT_TIMEOUT_SECONDS``) raises
:class:`~exobrain.outages.DependencyUnavailable`, never a bare ``OSError`` that
could come from anywhere.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from asyncpg.pool import PoolConnectionProxy

from exobrain.config import Settings
from exobrain.outages import DependencyUnavailable

#: A connection, pooled or not: what SQL helpers accept.
Connection = asyncpg.Connection | PoolConnectionProxy


async def create_pool(settings: Settings) -> asyncpg.Pool:
    """A pool whose connections decode JSON with orjson and run ``RESHAPE_SCHEMA_QUERY``."""
    reshape = settings.reshape_schema_query

    async def init(connection: asyncpg.Connection) -> None:
        for json_type in ("json", "jsonb"):
            await connection.set_type_codec(
                json_type, schema="pg_catalog", encoder=_dumps, decoder=orjson.loads
            )
        if reshape:
            await connection.execute(reshape)

    pool = await asyncpg.create_pool(
        str(settings.assistant_db_dsn),
        min_size=settings.assistant_db_pool_min_size,
        max_size=settings.assistant_db_pool_max_size,
        connect=_connect,
        timeout=settings.assistant_db_connect_timeout_seconds,
        init=init,
        reset=_keep_session,
        # JIT pays off for analytics, not here: a misestimated cost put ~100 ms of
        # compilation in front of a 0.2 ms knowledge selection.
        server_settings={"jit": "off"},
    )
    assert pool is not None
    return pool


async def _connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    """asyncpg's own connect, its failure to reach the server reported as an outage."""
    try:
        return await asyncpg.connect(*args, **kwargs)
    except (OSError, TimeoutError) as exc:
        raise DependencyUnavailable("postgres", exc) from exc


async def _keep_session(connection: asyncpg.Connection) -> None:
    """On release, keep the session as ``init`` left it.

    asyncpg's default reset runs ``RESET ALL`` (undoing ``RESHAPE_SCHEMA_QUERY``
    after a connection's first use) plus unlocks and ``UNLISTEN``, one more round
    trip per release for state nothing here keeps; open transactions are still
    rolled back before this is called.
    """


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
