"""Real PostgreSQL, Redis and NATS servers from PyPI wheels, for `dev` and tests."""

from ._process import EmbeddedServer, EmbeddedServerError, free_port
from .servers import EmbeddedNats, EmbeddedPostgres, EmbeddedRedis
from .stack import embedded_stack

__all__ = [
    "EmbeddedNats",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "EmbeddedServer",
    "EmbeddedServerError",
    "embedded_stack",
    "free_port",
]
