"""The aiohttp application factory."""

from __future__ import annotations

from aiohttp import web

from exobrain.config import Settings

from . import health, resources
from .docs import setup_docs
from .errors import error_middleware

#: Requests bodies above this are answered 413 before a handler sees them.
MAX_REQUEST_BYTES = 1024 * 1024


def create_app(settings: Settings) -> web.Application:
    """Build the application; resources start and stop with it, in order."""
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_REQUEST_BYTES)
    app[resources.SETTINGS] = settings
    app[health.READINESS] = health.Readiness(settings.readiness_timeout_seconds)
    app.cleanup_ctx.extend(
        [resources.postgres_ctx, resources.redis_ctx, resources.nats_ctx, resources.qdrant_ctx]
    )
    if settings.exobrain_memgraph_url is not None:
        app.cleanup_ctx.append(resources.memgraph_ctx)
    app.router.add_routes(health.routes)
    if settings.is_local:
        setup_docs(app)
    return app
