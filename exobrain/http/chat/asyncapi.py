"""The AsyncAPI 3 document of ``/api/chat/ws``, generated from the frame models.

Served as ``/asyncapi.json`` beside ``/openapi.json`` when ``APP_ENV=local``.
The frame, event, error and close code tables of docs/websocket-protocol.md come from
the same models (``scripts/gen-protocol-doc`` rewrites them; a test fails when they
drift), so the protocol has one source.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from exobrain.config import Settings
from exobrain.http.contract import Reply, operation
from exobrain.http.errors import json_response
from exobrain.http.resources import SETTINGS

from .frames import (
    ANSWERS,
    ANY_EVENT_FRAME,
    CLIENT_FRAMES,
    CLOSE_CODES,
    ERROR_CODES,
    EVENT_FRAMES,
    SERVER_FRAMES,
    ErrorFrame,
    EventFrame,
    frame_type,
)

PATH = "/api/chat/ws"
_SCHEMAS = "#/components/schemas/{model}"
_CHANNEL = "#/channels/chat"


def asyncapi_document(
    settings: Settings, host: str | None = None, secure: bool = False
) -> dict[str, Any]:
    """The document; with ``host``, a server to connect to (``wss`` when ``secure``)."""
    payloads, schemas = _payloads()
    schemas["ChatSend"]["properties"]["message"]["maxLength"] = settings.chat_max_message_chars
    messages = {kind: _message(kind, model, payloads[kind]) for kind, model in _frames()}
    document: dict[str, Any] = {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Exobrain chat WebSocket",
            "version": "0.1.0",
            "description": _describe(settings),
        },
        "defaultContentType": "application/json",
        "channels": {"chat": _channel(messages)},
        "operations": _operations(),
        "components": {
            "messages": messages,
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "`Authorization: Bearer <access_token>` on the upgrade",
                },
                "sessionCookie": {
                    "type": "httpApiKey",
                    "in": "cookie",
                    "name": settings.auth_cookie_name,
                    "description": "the session cookie of `POST /api/auth/login` with "
                    "`session_mode: web`; the upgrade's `Origin` must be allowed",
                },
            },
        },
    }
    if host is not None:
        document["servers"] = {
            "this": {
                "host": host,
                "protocol": "wss" if secure else "ws",
                "security": [
                    {"$ref": "#/components/securitySchemes/bearerAuth"},
                    {"$ref": "#/components/securitySchemes/sessionCookie"},
                ],
            }
        }
    return document


def _frames() -> list[tuple[str, type[BaseModel]]]:
    """Every frame's ``type`` and model, client frames first."""
    return [(frame_type(model), model) for model in (*CLIENT_FRAMES, *SERVER_FRAMES)]


def _payloads() -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Each frame type's payload schema (a reference), and the schemas they reference."""
    inputs: list[tuple[str, JsonSchemaMode, TypeAdapter[Any]]] = [
        (kind, "validation", TypeAdapter(ANY_EVENT_FRAME if model is EventFrame else model))
        for kind, model in _frames()
    ]
    refs, definitions = TypeAdapter.json_schemas(inputs, ref_template=_SCHEMAS)
    payloads = {kind: schema for (kind, _), schema in refs.items()}
    # AsyncAPI's schemas are JSON Schema draft 7: no OpenAPI ``discriminator`` object
    payloads["event"] = {"oneOf": payloads["event"]["oneOf"]}
    return payloads, definitions["$defs"]


def _message(kind: str, model: type[BaseModel], payload: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "name": kind,
        "title": kind,
        "summary": _doc(model),
        "payload": payload,
    }
    if model is ErrorFrame:
        codes = "\n".join(f"- `{code}`: {meaning}" for code, meaning in ERROR_CODES.items())
        message["description"] = f"`code` is one of:\n\n{codes}"
    return message


def _doc(model: type[BaseModel]) -> str:
    """The model's own docstring (not an inherited one) on one line, in Markdown."""
    return " ".join((model.__doc__ or "").split()).replace("``", "`")


def _channel(messages: dict[str, Any]) -> dict[str, Any]:
    closes = {
        str(code): {"meaning": meaning, "reconnect": reconnect}
        for code, (meaning, reconnect) in CLOSE_CODES.items()
    }
    return {
        "address": PATH,
        "title": "One WebSocket per browser tab",
        "description": "Every frame is a JSON text frame holding an object with a `type`; "
        "unknown members are ignored. Refusals happen before the upgrade, as JSON: 401 without "
        "valid credentials, 403 for the cookie from an origin that is not allowed, 503 while "
        "the server shuts down. Close codes are in `x-close-codes`.",
        "messages": {kind: {"$ref": f"#/components/messages/{kind}"} for kind in messages},
        "bindings": {
            "ws": {
                "method": "GET",
                "headers": {
                    "type": "object",
                    "properties": {
                        "Authorization": {"type": "string", "pattern": "^Bearer .+$"},
                        "Origin": {"type": "string", "description": "required with the cookie"},
                    },
                },
                "bindingVersion": "0.1.0",
            }
        },
        "x-close-codes": closes,
    }


def _operations() -> dict[str, Any]:
    """What the server receives (with the answers it replies) and what it sends unasked."""

    def ref(kind: str) -> dict[str, str]:
        return {"$ref": f"{_CHANNEL}/messages/{kind}"}

    channel = {"$ref": _CHANNEL}
    operations: dict[str, Any] = {}
    for model in CLIENT_FRAMES:
        kind = frame_type(model)
        operations[kind] = {
            "action": "receive",
            "channel": channel,
            "summary": _doc(model),
            "messages": [ref(kind)],
            "reply": {
                "channel": channel,
                "messages": [ref(frame_type(ANSWERS[model])), ref("error")],
            },
        }
    answers = {frame_type(model) for model in ANSWERS.values()} | {"error"}
    for model in SERVER_FRAMES:
        kind = frame_type(model)
        if kind not in answers:
            operations[kind] = {
                "action": "send",
                "channel": channel,
                "summary": _doc(model),
                "messages": [ref(kind)],
            }
    return operations


def _describe(settings: Settings) -> str:
    return (
        "The chat of one user over one WebSocket per tab: every turn of the user reaches every "
        "socket of the user, and `event` frames carry exactly the SSE payloads of "
        "`GET /api/chat/stream/{stream_id}`. Limits here: frames up to "
        f"{settings.chat_ws_max_frame_bytes} bytes, {settings.chat_ws_max_frames_per_second:g} "
        f"frames a second (bursts of {settings.chat_ws_frame_burst}), messages up to "
        f"{settings.chat_max_message_chars} characters, "
        f"{settings.chat_ws_max_connections_per_user} sockets per user. "
        "The protocol in prose: docs/websocket-protocol.md."
    )


@operation(responses={200: Reply("This document.", dict[str, Any])})
async def asyncapi_json(request: web.Request) -> web.Response:
    """The AsyncAPI 3 description of the chat WebSocket."""
    return json_response(asyncapi_document(request.app[SETTINGS], request.host, request.secure))


def setup_asyncapi(app: web.Application) -> None:
    app.router.add_get("/asyncapi.json", asyncapi_json)


# The tables of docs/websocket-protocol.md --------------------------------------------------

_TABLE = re.compile(r"(<!-- generated: (\w+) -->\n).*?(<!-- end -->)", re.DOTALL)


def _members(model: type[BaseModel]) -> str:
    """``model``'s members but ``type``, each with its kind of value where that says more
    than "string"; ``?`` marks the optional ones."""
    schema = model.model_json_schema()
    members = []
    for name, field in model.model_fields.items():
        if name != "type":
            kind = _kind(schema["properties"][name])
            optional = "" if field.is_required() else "?"
            members.append(f"`{name}`{optional}" + (f" ({kind})" if kind else ""))
    if model is EventFrame:
        names = ", ".join(f"`{frame_type(event, 'event')}`" for event in EVENT_FRAMES)
        members += [f"`event` ({names})", "`data` (the event's, below)"]
    return ", ".join(members) or "—"


def _data(event: type[BaseModel]) -> str:
    """The members of an event's ``data`` and what the event means."""
    data: type[BaseModel] = event.model_fields["data"].annotation  # type: ignore[assignment]
    return f"{_members(data)} | {_doc(data)}"


def _kind(schema: dict[str, Any]) -> str:
    schema = next((s for s in schema.get("anyOf", ()) if s.get("type") != "null"), schema)
    if schema.get("format") == "uuid":
        return "UUID"
    if "examples" in schema:
        return f"e.g. `{schema['examples'][0]}`"
    if schema.get("type") == "integer":
        return f"integer ≥ {schema['minimum']}" if "minimum" in schema else "integer"
    return "boolean" if schema.get("type") == "boolean" else ""


def _rows(models: tuple[type[BaseModel], ...]) -> list[str]:
    return [f"| `{frame_type(m)}` | {_members(m)} | {_doc(m)} |" for m in models]


def tables() -> dict[str, str]:
    """Each generated table of the protocol doc by name, as Markdown."""
    head = ["| type | members (`?`: optional) | meaning |", "| --- | --- | --- |"]
    return {
        "client_frames": "\n".join([*head, *_rows(CLIENT_FRAMES)]),
        "server_frames": "\n".join([*head, *_rows(SERVER_FRAMES)]),
        "event_data": "\n".join(
            ["| `event` | `data` | meaning |", "| --- | --- | --- |"]
            + [f"| `{frame_type(e, 'event')}` | {_data(e)} |" for e in EVENT_FRAMES]
        ),
        "error_codes": "\n".join(
            ["| code | meaning |", "| --- | --- |"]
            + [f"| `{code}` | {meaning} |" for code, meaning in ERROR_CODES.items()]
        ),
        "close_codes": "\n".join(
            ["| code | meaning | reconnect? |", "| --- | --- | --- |"]
            + [
                f"| {code} | {meaning} | {again} |"
                for code, (meaning, again) in CLOSE_CODES.items()
            ]
        ),
    }


def with_tables(text: str) -> str:
    """``text`` (the protocol doc) with its generated tables as the models have them."""
    generated = tables()
    return _TABLE.sub(lambda m: f"{m[1]}{generated[m[2]]}\n{m[3]}", text)


def rewrite_tables(doc: Path) -> None:
    doc.write_text(with_tables(doc.read_text("utf-8")), "utf-8")
