"""The aiohttp application factory."""

from __future__ import annotations

import asyncio

from aiohttp import web

from exobrain.config import Settings
from exobrain.metrics import Metrics

from . import actors, health, ops, resources, user_configs
from .auth import setup_auth
from .chat import ownership_ctx, session_ticker_ctx, setup_chat, setup_chat_socket
from .chat.asyncapi import setup_asyncapi
from .csrf import csrf_middleware
from .docs import setup_docs
from .errors import error_middleware
from .journal import setup_journal
from .knowledge import setup_job_worker, setup_knowledge, setup_knowledge_base
from .validation import utf8_headers

#: Requests bodies above this are answered 413 before a handler sees them.
MAX_REQUEST_BYTES = 1024 * 1024


def create_app(settings: Settings) -> web.Application:
    """Build the application; resources start and stop with it, in order."""
    app = web.Application(
        middlewares=[ops.metrics_middleware, error_middleware, utf8_headers, csrf_middleware],
        client_max_size=MAX_REQUEST_BYTES,
    )
    app[resources.SETTINGS] = settings
    app[health.READINESS] = health.Readiness(settings.readiness_timeout_seconds, ops.sees_details)
    app[actors.METRICS] = Metrics()
    app[actors.FATAL] = asyncio.Event()
    children: list[actors.ChildFactory] = [actors.journal_child]
    app[actors.ACTOR_CHILDREN] = children
    app[actors.JOURNAL_LISTENERS] = []
    app.cleanup_ctx.extend([resources.postgres_ctx, resources.redis_ctx, resources.nats_ctx])
    setup_knowledge_base(app)  # Qdrant and the passages, if on
    if settings.exobrain_memgraph_url is not None:
        app.cleanup_ctx.append(resources.memgraph_ctx)
    setup_auth(app)
    setup_journal(app)  # its invalidation listener must exist before the actors start
    setup_chat(app)
    setup_chat_socket(app)  # at shutdown its sockets close after the sessions stored their turns
    setup_knowledge(app)  # its transport starts after NATS, its actor with the others
    setup_job_worker(app)
    app.cleanup_ctx.append(actors.actors_ctx)  # late up, early down: stops before the pool closes
    app.cleanup_ctx.extend([ownership_ctx, session_ticker_ctx])
    app.router.add_routes(health.routes)
    app.router.add_routes(ops.routes)
    app.router.add_routes(user_configs.routes)
    if settings.is_local:
        setup_docs(app)
        setup_asyncapi(app)
    return app
