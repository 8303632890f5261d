"""Every error leaves as JSON: ``{"detail": ...}``, the reference API's shape.

An outage of a dependency the request needed (:mod:`exobrain.outages`) is a
503 with ``Retry-After`` that names it; any other unexpected exception is a
500 that names nothing.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from exobrain.outages import outage_of

log = logging.getLogger(__name__)


def json_response(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response serialised with orjson."""
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


class JsonError(web.HTTPError):
    """Raise to end a request with ``status`` and ``{"detail": detail}``."""

    def __init__(self, status: int, detail: Any, *, headers: dict[str, str] | None = None) -> None:
        self.status_code = status
        super().__init__(
            text=orjson.dumps({"detail": detail}).decode(),
            content_type="application/json",
            headers=headers,
        )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's plain-text errors and unexpected exceptions into JSON bodies."""
    try:
        return await handler(request)
    except JsonError:
        raise
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kept = {
            name: value
            for name, value in exc.headers.items()
            if name.lower() not in {"content-type", "content-length"}
        }
        return json_response({"detail": exc.reason}, status=exc.status, headers=kept)
    except Exception as exc:
        if (down := outage_of(exc)) is not None:
            log.warning("%s %s: %s", request.method, request.path, down)
            headers = {"Retry-After": str(down.retry_after)}
            return json_response({"detail": down.detail}, status=503, headers=headers)
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_response({"detail": "internal server error"}, status=500)
