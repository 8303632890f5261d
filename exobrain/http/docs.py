"""OpenAPI document and an offline Swagger UI, served only when ``APP_ENV=local``.

The document is generated from the routes and their contracts
(:mod:`exobrain.http.contract`): the same pydantic models that validate each
request and describe each answer give its schemas, collected into
``components/schemas``; each handler's docstring is its summary and
description. Documentation cannot drift from the router or the validation.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode
from swagger_ui_bundle import swagger_ui_path

from .contract import Operation, Reply, declared, operation, with_answer
from .csrf import CROSS_SITE, SAFE_METHODS
from .errors import json_response
from .resources import SETTINGS

_PATH_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")
_REF = "#/components/schemas/{model}"

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

#: A schema's key: what it describes and whether it is read (validation) or written.
_Key = tuple[int, JsonSchemaMode]


class UndeclaredRoute(LookupError):
    """A route whose handler has no contract: every route must declare one."""


def routes(app: web.Application) -> Iterator[tuple[str, str, Any]]:
    """Every API route as (method, OpenAPI path, handler).

    HEAD (aiohttp adds it to every GET) and the Swagger UI's static files are
    not API operations.
    """
    for route in app.router.routes():
        if route.method in {"HEAD", "*"} or isinstance(route.resource, web.StaticResource):
            continue
        info = route.resource.get_info() if route.resource else {}
        template = info.get("formatter") or info.get("path")
        if template:
            yield route.method, _PATH_PARAM.sub(r"{\1}", template), route.handler


def openapi_document(app: web.Application) -> dict[str, Any]:
    found: list[tuple[str, str, Any, Operation]] = []
    for method, path, handler in routes(app):
        contract = declared(handler)
        if contract is None:
            raise UndeclaredRoute(f"{method} {path} declares no contract ({operation.__module__})")
        if method not in SAFE_METHODS:
            contract = with_answer(contract, 403, CROSS_SITE)
        found.append((method, path, handler, contract))
    schemas = _Schemas()
    for *_, contract in found:
        schemas.add_operation(contract)
    refs, definitions = schemas.generate()
    paths: dict[str, dict[str, Any]] = {}
    for method, path, handler, contract in found:
        paths.setdefault(path, {})[method.lower()] = _operation(
            path, handler, contract, refs, definitions
        )
    for *_, contract in found:  # parameter models became parameters, not components
        for model in (contract.query, contract.path, contract.headers):
            if model is not None:
                definitions.pop(model.__name__, None)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Exobrain assistant backend", "version": "0.1.0"},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(definitions.items())),
            "securitySchemes": _security_schemes(app),
        },
    }


class _Schemas:
    """Every type the contract names, turned into JSON schemas in one pass, so that each
    model is one component however many operations use it."""

    def __init__(self) -> None:
        self._inputs: dict[_Key, Any] = {}

    def add_operation(self, contract: Operation) -> None:
        for model in (contract.body, contract.query, contract.path, contract.headers):
            if model is not None:
                self._add(model, "validation")
        for reply in contract.responses.values():
            for body in reply.content().values():
                self._add(body, "serialization")

    def _add(self, kind: Any, mode: JsonSchemaMode) -> None:
        self._inputs.setdefault((id(kind), mode), kind)

    def generate(self) -> tuple[dict[_Key, dict[str, Any]], dict[str, Any]]:
        generator = GenerateJsonSchema(ref_template=_REF)
        refs, definitions = generator.generate_definitions(
            [
                (id(kind), mode, TypeAdapter(kind).core_schema)
                for (_, mode), kind in self._inputs.items()
            ]
        )
        return (
            {key: dict(schema) for key, schema in refs.items()},
            {str(name): schema for name, schema in definitions.items()},
        )


def _operation(
    path: str,
    handler: Any,
    contract: Operation,
    refs: dict[_Key, dict[str, Any]],
    definitions: dict[str, Any],
) -> dict[str, Any]:
    summary, _, description = (inspect.getdoc(handler) or "").partition("\n")
    operation: dict[str, Any] = {
        "operationId": handler.__name__,
        "tags": [_tag(path)],
        "summary": summary,
    }
    if description.strip():
        operation["description"] = description.strip()
    parameters = [
        parameter
        for where, model in (
            ("path", contract.path),
            ("query", contract.query),
            ("header", contract.headers),
        )
        if model is not None
        for parameter in _parameters(where, refs[(id(model), "validation")], definitions)
    ]
    named = {parameter["name"] for parameter in parameters if parameter["in"] == "path"}
    if named != set(_PATH_PARAM.findall(path)):
        raise UndeclaredRoute(f"{path}: the path model names {sorted(named)}")
    if parameters:
        operation["parameters"] = parameters
    if contract.body is not None:
        operation["requestBody"] = {
            "required": contract.body_required,
            "content": {"application/json": {"schema": refs[(id(contract.body), "validation")]}},
        }
    operation["responses"] = {
        str(status): _response(reply, refs) for status, reply in contract.responses.items()
    }
    if contract.security:
        operation["security"] = [{scheme: []} for scheme in contract.security]
    return operation


def _parameters(
    where: str, schema: dict[str, Any], definitions: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    """A parameter model's fields, each an OpenAPI parameter (field aliases are names)."""
    model = definitions[schema["$ref"].rpartition("/")[2]]
    required = set(model.get("required", ()))
    for name, property_schema in model["properties"].items():
        field_schema = _absent_not_null(property_schema)
        parameter: dict[str, Any] = {"name": name, "in": where, "required": name in required}
        if "description" in field_schema:
            parameter["description"] = field_schema.pop("description")
        parameter["schema"] = field_schema
        yield parameter


def _absent_not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A parameter's schema: an optional parameter is left out, never sent as null."""
    kept = {key: value for key, value in schema.items() if key not in {"title", "anyOf"}}
    if kept.get("default") is None:
        kept.pop("default", None)
    if "anyOf" in schema:
        branches = [branch for branch in schema["anyOf"] if branch != {"type": "null"}]
        if len(branches) == 1:
            kept |= branches[0]
        else:
            kept["anyOf"] = branches
    return kept


def _response(reply: Reply, refs: dict[_Key, dict[str, Any]]) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": reply.description}
    if reply.headers:
        answer["headers"] = {
            str(name): {  # aiohttp's header names are istr, which orjson refuses
                "description": header.description,
                "required": header.required,
                "schema": dict(header.schema),
            }
            for name, header in reply.headers.items()
        }
    if content := reply.content():
        answer["content"] = {
            media_type: {"schema": refs[(id(body), "serialization")]}
            for media_type, body in content.items()
        }
    return answer


def _tag(path: str) -> str:
    """``/api/<tag>/...``; the service's own routes (health, metrics, docs) are ``service``."""
    parts = path.split("/")
    return parts[2] if len(parts) > 2 and parts[1] == "api" else "service"


def _security_schemes(app: web.Application) -> dict[str, Any]:
    return {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An access token (`POST /api/auth/login`, `issuance_policy=tokens`).",
        },
        "sessionCookie": {
            "type": "apiKey",
            "in": "cookie",
            "name": app[SETTINGS].auth_cookie_name,
            "description": "The browser session `POST /api/auth/login` sets (HttpOnly).",
        },
        "opsToken": {
            "type": "http",
            "scheme": "bearer",
            "description": "`OPS_TOKEN`; without it the ops endpoints are open only locally.",
        },
    }


@operation(responses={200: Reply("This document.", dict[str, Any])})
async def openapi_json(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of this API."""
    return json_response(openapi_document(request.app))


@operation(responses={200: Reply("The page.", str, media_type="text/html")})
async def docs_page(request: web.Request) -> web.Response:
    """Interactive API documentation (Swagger UI, served from the package, no CDN)."""
    return web.Response(text=_PAGE, content_type="text/html")


def setup_docs(app: web.Application) -> None:
    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", docs_page)
    app.router.add_static("/docs/static", str(swagger_ui_path))
