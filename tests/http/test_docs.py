"""The OpenAPI document: complete, valid, generated from the contracts; served only locally."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from aiohttp import web

from exobrain.config import Settings
from exobrain.http import create_app
from exobrain.http.contract import declared
from exobrain.http.docs import UndeclaredRoute, openapi_document

AiohttpClient = Callable[..., Any]


@pytest.fixture
def document(settings: Settings) -> dict[str, Any]:
    return openapi_document(create_app(settings))


def test_every_route_declares_its_answers(settings: Settings) -> None:
    app = create_app(settings)
    undeclared = []
    for route in app.router.routes():
        # aiohttp answers HEAD for every GET itself; the docs' static files are files.
        if route.method == "HEAD" or isinstance(route.resource, web.StaticResource):
            continue
        contract = declared(route.handler)
        if contract is None or not contract.responses:
            undeclared.append(
                f"{route.method} {route.resource.canonical if route.resource else ''}"
            )
    assert undeclared == []


def test_a_route_without_a_contract_stops_the_document(settings: Settings) -> None:
    app = create_app(settings)

    async def bare(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get("/bare", bare)
    with pytest.raises(UndeclaredRoute, match="GET /bare"):
        openapi_document(app)


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"] == "3.1.0"
    schemathesis.openapi.from_dict(document).validate()
    operation_ids = [
        operation["operationId"]
        for methods in document["paths"].values()
        for operation in methods.values()
    ]
    assert len(operation_ids) == len(set(operation_ids))


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    refs: set[str] = set()

    def collect(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(ref := node.get("$ref"), str):
                refs.add(ref.removeprefix("#/components/schemas/"))
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(document)
    assert refs
    assert refs <= set(document["components"]["schemas"])


def test_requests_are_described_by_their_models(document: dict[str, Any]) -> None:
    paths, schemas = document["paths"], document["components"]["schemas"]
    login = paths["/api/auth/login"]["post"]
    assert login["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/LoginRequest"
    }
    assert schemas["LoginRequest"]["required"] == ["email", "password"]
    assert schemas["LoginRequest"]["properties"]["password"]["minLength"] == 8
    search = {p["name"]: p for p in paths["/api/journal/search"]["get"]["parameters"]}
    assert search["q"]["in"] == "query"
    assert search["q"]["required"] is True
    assert search["q"]["schema"]["maxLength"] == 200
    assert search["limit"]["schema"] == {
        "default": 20,
        "maximum": 100,
        "minimum": 1,
        "type": "integer",
    }
    cursor = {p["name"]: p for p in paths["/api/journal"]["get"]["parameters"]}["cursor"]
    assert (cursor["required"], cursor["schema"]["type"]) == (False, "string")  # absent, not null
    [reference] = paths["/api/journal/{reference}/messages"]["get"]["parameters"][:1]
    assert (reference["name"], reference["in"], reference["required"]) == (
        "reference",
        "path",
        True,
    )
    assert re.fullmatch(reference["schema"]["pattern"], "2024/02/29")
    assert not re.fullmatch(reference["schema"]["pattern"], "2025/02/29")
    [last_event_id] = [
        p for p in paths["/api/chat/stream/{stream_id}"]["get"]["parameters"] if p["in"] == "header"
    ]
    assert last_event_id["name"] == "Last-Event-ID"
    assert last_event_id["schema"]["type"] == "integer"


def test_stored_strings_refuse_nul_in_the_document_too(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for model, field in (("ChatMessage", "message"), ("LoginRequest", "email")):
        pattern = schemas[model]["properties"][field]["pattern"]
        assert "\\u0000" in pattern
        assert re.search(pattern, "hello")
        assert not re.search(pattern, "hel\x00lo")
    assert not re.search(schemas["ChatMessage"]["properties"]["message"]["pattern"], " \t\n")


def test_answers_carry_their_schemas_and_headers(document: dict[str, Any]) -> None:
    paths = document["paths"]
    me = paths["/api/users/me"]["get"]
    assert me["security"] == [{"bearerAuth": []}, {"sessionCookie": []}]
    assert set(me["responses"]) == {"200", "400", "401", "503"}
    assert me["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Me"
    }
    assert me["responses"]["401"]["headers"]["WWW-Authenticate"]["required"] is True
    assert me["responses"]["503"]["headers"]["Retry-After"]["schema"]["type"] == "integer"
    login = paths["/api/auth/login"]["post"]["responses"]
    assert login["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ValidationErrors"
    }
    assert login["429"]["headers"]["Retry-After"]["required"] is True
    assert set(login) == {"200", "400", "401", "403", "413", "422", "429", "503"}
    assert "cross-site" in login["403"]["description"]  # every unsafe method's, not GET's
    stream = paths["/api/chat/stream/{stream_id}"]["get"]["responses"]["200"]
    assert list(stream["content"]) == ["text/event-stream"]
    export = paths["/api/journal/{reference}/export"]["get"]["responses"]["200"]
    assert set(export["content"]) == {"text/markdown", "application/json"}
    ops = paths["/metrics"]["get"]
    assert ops["security"] == [{"opsToken": []}]
    assert set(ops["responses"]) == {"200", "400", "401", "403"}


def test_security_schemes_name_the_configured_cookie(
    make_settings: Callable[..., Settings],
) -> None:
    app = create_app(make_settings(auth_cookie_name="my_session"))
    schemes = openapi_document(app)["components"]["securitySchemes"]
    assert schemes["sessionCookie"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "my_session",
        "description": schemes["sessionCookie"]["description"],
    }
    assert schemes["bearerAuth"]["bearerFormat"] == "JWT"


async def test_docs_are_served_offline_locally(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    client = await aiohttp_client(create_app(settings))
    page = await client.get("/docs")
    assert page.status == 200
    html = await page.text()
    assert not re.search(r"(src|href)=\"https?://", html)  # nothing from a CDN
    for asset in re.findall(r"(?:src|href)=\"(/docs/static/[^\"]+)\"", html):
        response = await client.get(asset)
        assert response.status == 200, asset
        assert len(await response.read()) > 1000
    spec = await (await client.get("/openapi.json")).json()
    assert spec == openapi_document(client.app)
    assert spec["paths"]["/readyz"]["get"]["summary"].startswith("Readiness")


async def test_docs_are_absent_outside_local(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings(app_env="production", auth_jwt_secret="p" * 40)
    client = await aiohttp_client(create_app(settings))
    for path in ("/docs", "/openapi.json", "/docs/static/swagger-ui.css"):
        response = await client.get(path)
        assert response.status == 404, path
        assert await response.json() == {"detail": "Not Found"}
