"""JSON request bodies validated by pydantic models, with the reference API's errors.

Invalid JSON is 400; a body that breaks the model is 422 listing every offending
field as FastAPI does (``{"detail": [{"loc": ["body", "password"], "msg": ...,
"type": ...}]}``); bodies over the app's ``client_max_size`` are 413 before
parsing. The offending input is never echoed back: it may be a password.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from .errors import JsonError

M = TypeVar("M", bound=BaseModel)


async def parse_body(
    request: web.Request, model: type[M], *, context: dict[str, Any] | None = None
) -> M:
    """The request's JSON body as ``model``, or a :class:`JsonError` (400, 413 or 422).

    ``context`` reaches the model's validators (limits that come from settings).
    """
    raw = await request.read()
    if not raw.strip():
        raise JsonError(422, [_problem((), "Field required", "missing")])
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise JsonError(400, "request body is not valid JSON") from None
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        problems = [
            _problem(error["loc"], error["msg"], error["type"])
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise JsonError(422, problems) from None


def _problem(loc: tuple[int | str, ...], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": msg, "type": kind}


def parse_path_uuid(request: web.Request, name: str) -> uuid.UUID:
    """The path segment ``{name}`` as a UUID, or 422 naming it."""
    try:
        return uuid.UUID(request.match_info[name])
    except ValueError:
        problem = {"loc": ["path", name], "msg": "Input should be a valid UUID", "type": "uuid"}
        raise JsonError(422, [problem]) from None
