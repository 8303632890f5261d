"""Dependency outages: one exception, and the one place that recognises drivers' errors as one.

A request that needs PostgreSQL, Redis or NATS while it is down is answered
503 with ``Retry-After`` and ``{"detail": "<name> unavailable"}`` (the
WebSocket answers an ``unavailable`` error frame), never 500. Each driver
reports an outage in its own way; :func:`outage_of` recognises exactly those
errors (refused, reset or lost connections, a server shutting down or
starting up, a connect timeout) and nothing else, so a constraint violation
or a bug keeps its own answer.

Example::

    try:
        await pool.fetch("SELECT 1")
    except Exception as exc:
        if (down := outage_of(exc)) is None:
            raise
        answer_503(down.detail, retry_after=down.retry_after)
"""

from __future__ import annotations

import asyncpg
import nats.errors
import nats.js.errors
import redis.exceptions

#: Seconds a client is asked to wait before trying again: servers restart in seconds, and a
#: request that fails fast costs little.
RETRY_AFTER_SECONDS = 1


class DependencyUnavailable(ConnectionError):
    """``name`` (``postgres``, ``redis``, ``nats``...) cannot be used right now.

    A ``ConnectionError``, so code that already treats a lost connection as
    transient (``except OSError``) treats this one so too. ``str()`` carries the
    cause for logs; :attr:`detail` is what clients see (no hosts, ports or
    driver messages).
    """

    def __init__(self, name: str, cause: object = None, *, retry_after: int = RETRY_AFTER_SECONDS):
        self.name, self.retry_after = name, retry_after
        super().__init__(self.detail if cause is None else f"{self.detail}: {cause}")

    @property
    def detail(self) -> str:
        return f"{self.name} unavailable"


#: asyncpg errors that mean "the server cannot serve now": connection failures (class 08),
#: a server shutting down, crashing or starting up, no connection slot left.
_POSTGRES_DOWN = (
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)
#: A pooled connection the server dropped while it was in use.
_CLOSED_CONNECTION = "connection is closed"
#: redis-py's: a connection refused, reset or timed out (``BusyLoadingError`` included).
_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
#: nats-py's: disconnected, reconnecting, no server, no JetStream answering in time.
_NATS_DOWN = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.NoServersError,
    nats.errors.NoRespondersError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.TimeoutError,
    nats.js.errors.ServiceUnavailableError,
)


_DOWN = (("postgres", _POSTGRES_DOWN), ("redis", _REDIS_DOWN), ("nats", _NATS_DOWN))


def outage_of(exc: BaseException) -> DependencyUnavailable | None:
    """The outage ``exc`` reports, or None when it reports anything else."""
    if isinstance(exc, DependencyUnavailable):
        return exc
    if isinstance(exc, asyncpg.InterfaceError) and str(exc) == _CLOSED_CONNECTION:
        return DependencyUnavailable("postgres", exc)
    for name, errors in _DOWN:
        if isinstance(exc, errors):
            return DependencyUnavailable(name, exc)
    return None
