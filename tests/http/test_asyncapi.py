"""The AsyncAPI document of /api/chat/ws: served locally, complete, true to what the server does.

What the document must hold is derived from the code, not listed here: the
frames the socket acts on (its ``match``), the frames ``frames.py`` encodes, the
error codes every refusal of the chat package uses, the close codes the socket
sends. Then frames a real server sends are checked against their models.
"""

from __future__ import annotations

import ast
import typing
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from auth_support import start
from pydantic import BaseModel, TypeAdapter
from test_chat import signed_in
from test_chat_socket import WS, chat_send, frame

from exobrain.config import Settings
from exobrain.http import create_app
from exobrain.http.chat import asyncapi, frames
from exobrain.http.chat.socket import Close
from exobrain.http.resources import NATS
from exobrain.jobs.lifecycle import JobState, JobStatus, status_subject

AiohttpClient = Callable[..., Any]
CHAT = Path(frames.__file__).parent
PROTOCOL_DOC = Path(__file__).parents[2] / "docs" / "websocket-protocol.md"


def document() -> dict[str, Any]:
    return asyncapi.asyncapi_document(Settings(), "localhost:8080")


def syntax(module: Path) -> ast.Module:
    return ast.parse(module.read_text("utf-8"))


def messages(action: str) -> set[str]:
    """The frame types of the operations with ``action`` (receive: client frames)."""
    operations = document()["operations"].values()
    return {
        ref["$ref"].rsplit("/", 1)[1]
        for operation in operations
        if operation["action"] == action
        for ref in operation["messages"]
    }


def replies() -> set[str]:
    return {
        ref["$ref"].rsplit("/", 1)[1]
        for operation in document()["operations"].values()
        for ref in operation.get("reply", {}).get("messages", ())
    }


async def test_served_beside_openapi_locally(
    aiohttp_client: AiohttpClient, settings: Settings
) -> None:
    local = await aiohttp_client(create_app(settings))
    response = await local.get("/asyncapi.json")
    assert response.status == 200
    served = await response.json()
    assert served["asyncapi"] == "3.0.0"
    assert served["servers"]["this"] == {
        "host": f"{local.host}:{local.port}",
        "protocol": "ws",
        "security": [
            {"$ref": "#/components/securitySchemes/bearerAuth"},
            {"$ref": "#/components/securitySchemes/sessionCookie"},
        ],
    }
    assert served["channels"]["chat"]["address"] == WS
    assert (await local.get("/openapi.json")).status == 200


async def test_absent_outside_local(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    production = make_settings(app_env="production", auth_jwt_secret="p" * 40)
    remote = await aiohttp_client(create_app(production))
    response = await remote.get("/asyncapi.json")
    assert response.status == 404
    assert await response.json() == {"detail": "Not Found"}


def test_every_reference_resolves() -> None:
    whole = document()

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            yield from ([node["$ref"]] if "$ref" in node else [])
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    found = list(refs(whole))
    assert len(found) > 30
    for ref in found:
        target: Any = whole
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        assert isinstance(target, dict), ref


def test_every_frame_the_socket_acts_on_is_a_documented_client_frame() -> None:
    """The classes ``ChatSocket._act`` matches are what the server acts on; ``parse`` checks
    frames against the ``ClientFrame`` union."""
    socket = syntax(CHAT / "socket.py")
    [act] = [
        f for f in ast.walk(socket) if isinstance(f, ast.AsyncFunctionDef) and f.name == "_act"
    ]
    matched = {
        node.cls.id
        for node in ast.walk(act)
        if isinstance(node, ast.MatchClass) and isinstance(node.cls, ast.Name)
    }
    acted_on = {frames.frame_type(getattr(frames, name)) for name in matched}
    parsed = {frames.frame_type(model) for model in typing.get_args(frames.ClientFrame)}
    assert acted_on == parsed == messages("receive")


def test_every_frame_the_server_encodes_is_documented() -> None:
    """Every ``{"type": ...}`` that frames.py builds."""
    encoded = {
        value.value
        for node in ast.walk(syntax(CHAT / "frames.py"))
        if isinstance(node, ast.Dict)
        for key, value in zip(node.keys, node.values, strict=True)
        if isinstance(key, ast.Constant) and key.value == "type"
        if isinstance(value, ast.Constant)
    }
    assert encoded == messages("send") | replies()
    assert set(document()["components"]["messages"]) == encoded | messages("receive")


def test_every_error_code_of_the_chat_package_is_documented() -> None:
    """The codes of every ``ChatRefused``, ``FrameError`` and ``frames.error`` built in it."""
    positions = {"ChatRefused": 1, "FrameError": 0, "frames.error": 0}
    used = set()
    for module in CHAT.glob("*.py"):
        calls = [node for node in ast.walk(syntax(module)) if isinstance(node, ast.Call)]
        for call in calls:
            at = positions.get(ast.unparse(call.func))
            code = call.args[at] if at is not None and len(call.args) > at else None
            if isinstance(code, ast.Constant):
                used.add(code.value)
    assert used == set(frames.ERROR_CODES)
    schema = document()["components"]["schemas"]["ErrorFrame"]
    assert schema["properties"]["code"]["enum"] == list(frames.ERROR_CODES)


def test_optional_members_of_server_frames_are_absent_never_null() -> None:
    schemas = document()["components"]["schemas"]
    for model in (*frames.SERVER_FRAMES, *frames.EVENT_FRAMES):
        schema = schemas.get(model.__name__)
        for name, member in (schema or {}).get("properties", {}).items():
            if name not in schema["required"]:
                assert "anyOf" not in member, (model, name)
                assert "default" not in member, (model, name)


def test_every_close_code_the_socket_sends_is_documented() -> None:
    documented = document()["channels"]["chat"]["x-close-codes"]
    assert {str(code.value) for code in Close} <= set(documented)


def test_the_protocol_doc_tables_are_the_models() -> None:
    text = PROTOCOL_DOC.read_text("utf-8")
    assert text.count("<!-- generated: ") == len(asyncapi.tables())
    assert asyncapi.with_tables(text) == text, "run scripts/gen-protocol-doc"


class Recorder:
    """A socket whose every received frame is checked against its model and kept."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws, self.types = ws, set[str]()

    async def next(self) -> dict[str, Any]:
        received = await frame(self.ws)
        check(received)
        self.types.add(received["type"])
        return received

    async def until(self, kind: str, **members: Any) -> dict[str, Any]:
        """Frames up to the first of ``kind`` with these members, which is returned."""
        while (received := await self.next())["type"] != kind or any(
            received.get(key) != value for key, value in members.items()
        ):
            pass
        return received


SERVER_MODELS = {frames.frame_type(model): model for model in frames.SERVER_FRAMES}
EVENT_MODELS = {frames.frame_type(model, "event"): model for model in frames.EVENT_FRAMES}


def check(received: dict[str, Any]) -> None:
    """``received`` is valid as its model has it, and has no member the model lacks."""
    model: type[BaseModel] = SERVER_MODELS[received["type"]]
    if model is frames.EventFrame:
        model = EVENT_MODELS[received["event"]]
        data_model = model.model_fields["data"].annotation
        assert isinstance(data_model, type)
        assert set(received["data"]) <= set(data_model.model_fields), received
    TypeAdapter(model).validate_python(received)
    assert set(received) <= set(model.model_fields), received
    optional = [name for name, field in model.model_fields.items() if not field.is_required()]
    assert all(received.get(name, "absent") is not None for name in optional), received


async def test_what_a_server_sends_is_what_the_document_says(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    """One scenario through every server frame: each is valid as documented, and each
    client frame gets the answer the document names."""
    prefix = f"t{uuid.uuid4().hex}.jobs"
    client = await start(
        aiohttp_client,
        make_settings,
        main_agent_use_mock=True,
        main_agent_mock_words_per_second=50,
        job_subject_prefix=prefix,
    )
    answers = {frames.frame_type(c): frames.frame_type(a) for c, a in frames.ANSWERS.items()}
    account, headers = await signed_in(client)
    first = Recorder(await client.ws_connect(WS, headers=headers))
    await first.ws.send_json({"type": "ping"})
    assert (await first.next())["type"] == answers["ping"]
    sent = chat_send("tell me a story")
    await first.ws.send_json(sent)
    accepted = await first.until(answers["chat.send"])
    stream_id = accepted["stream_id"]
    await first.until("event", stream_id=stream_id)
    second = Recorder(await client.ws_connect(WS, headers=headers))
    await second.until("stream.active", stream_id=stream_id)
    await second.ws.send_json({"type": "stream.resume", "stream_id": stream_id, "after_seq": 0})
    await second.until(answers["stream.resume"], stream_id=stream_id)
    await second.ws.send_json({"type": "chat.cancel", "stream_id": stream_id})
    await second.until(answers["chat.cancel"], stream_id=stream_id)
    for socket in (first, second):
        await socket.until("event", stream_id=stream_id, event="done")
    await first.ws.send_json(
        {"type": "stream.resume", "stream_id": str(uuid.uuid4()), "after_seq": 0}
    )
    assert (await first.until("error"))["code"] == "stream_not_found"
    job_id = str(uuid.uuid4())
    status = JobStatus(
        job_id, "knowledge.update", str(account.user_id), JobState.SUCCEEDED, 1, "done", 1,
        datetime.now(UTC),
    )  # fmt: skip
    await client.app[NATS].publish(status_subject(prefix, job_id), status.encode())  # a worker's
    for socket in (first, second):
        await socket.until("job.status", job_id=job_id)
    assert first.types | second.types == set(SERVER_MODELS)


async def test_documented_limits_follow_the_settings(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> None:
    client = await start(aiohttp_client, make_settings, chat_max_message_chars=123)
    served = await (await client.get("/asyncapi.json")).json()
    message = served["components"]["schemas"]["ChatSend"]["properties"]["message"]
    assert message["maxLength"] == 123
