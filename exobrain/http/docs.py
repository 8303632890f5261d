"""OpenAPI document and an offline Swagger UI, served only when ``APP_ENV=local``.

The document is built from the routes themselves: each handler's docstring is
its summary and description, so documentation cannot drift from the router.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from aiohttp import web
from swagger_ui_bundle import swagger_ui_path

from .errors import json_response

_PATH_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Exobrain API</title>
  <link rel="stylesheet" href="/docs/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/static/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true});
  </script>
</body>
</html>
"""


def openapi_document(app: web.Application) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        template = info.get("formatter") or info.get("path")
        if not template or route.method in {"HEAD", "*"} or template.startswith("/docs"):
            continue
        path = _PATH_PARAM.sub(r"{\1}", template)
        summary, _, description = (inspect.getdoc(route.handler) or "").partition("\n")
        operation: dict[str, Any] = {
            "summary": summary,
            "responses": {"default": {"description": 'JSON; errors as {"detail": ...}'}},
        }
        if description.strip():
            operation["description"] = description.strip()
        if parameters := _PATH_PARAM.findall(template):
            operation["parameters"] = [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in parameters
            ]
        paths.setdefault(path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Exobrain assistant backend", "version": "0.1.0"},
        "paths": dict(sorted(paths.items())),
    }


async def openapi_json(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of this API."""
    return json_response(openapi_document(request.app))


async def docs_page(request: web.Request) -> web.Response:
    """Interactive API documentation (Swagger UI, served from the package, no CDN)."""
    return web.Response(text=_PAGE, content_type="text/html")


def setup_docs(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs_page)
    app.router.add_static("/docs/static", str(swagger_ui_path))
