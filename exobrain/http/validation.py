"""Requests validated by pydantic models, with the reference API's errors.

Invalid JSON (or a body or header that is not UTF-8) is 400; a body, query, path or
header that breaks its model is 422 listing every offending field as FastAPI
does (``{"detail": [{"loc": ["body", "password"], "msg": ..., "type": ...}]}``);
bodies over the app's ``client_max_size`` are 413 before parsing. The
offending input is never echoed back: it may be a password.

The same models describe the requests in the OpenAPI document
(:mod:`exobrain.http.contract`). Every string a request carries is
:data:`Text` (or :data:`NonBlankText`): PostgreSQL cannot store or compare the
NUL character, so it is refused here, naming the field, rather than failing
in the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic import ValidationError as PydanticValidationError
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from .errors import JsonError

M = TypeVar("M", bound=BaseModel)
#: The largest integer PostgreSQL's bigint holds.
BIGINT = 2**63 - 1
Where = Literal["body", "query", "path", "header"]

#: What Python's ``str.strip`` removes, as the body of a regex character class (every
#: whitespace character is in the Basic Multilingual Plane).
_SPACES = "".join(f"\\u{ord(char):04x}" for char in map(chr, range(0x10000)) if char.isspace())
_NUL = "\\u0000"


@dataclass(frozen=True, slots=True)
class _Storable:
    """A string PostgreSQL can hold: no NUL; with ``nonblank``, not only whitespace.

    The check and the JSON schema's ``pattern`` say the same thing, so clients
    and contract tests learn the rule from the document.
    """

    nonblank: bool = False

    def __get_pydantic_core_schema__(
        self, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        if self.nonblank:
            json_schema["pattern"] = f"^[^{_NUL}]*[^{_NUL}{_SPACES}][^{_NUL}]*$"
        else:
            json_schema["pattern"] = f"^[^{_NUL}]*$"
        return json_schema

    def _check(self, value: str) -> str:
        if "\x00" in value:
            raise ValueError("must not contain the NUL character (\\u0000)")
        if self.nonblank and not value.strip():
            raise ValueError("must not be empty")
        return value


#: Any string a request carries.
Text = Annotated[str, _Storable()]
#: A string with something besides whitespace in it.
NonBlankText = Annotated[str, _Storable(nonblank=True)]


class Params(BaseModel):
    """Query, path or header parameters: unknown ones are ignored, as FastAPI does."""

    model_config = ConfigDict(extra="ignore", frozen=True)


P = TypeVar("P", bound=Params)


@web.middleware
async def utf8_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """400 naming the first header whose bytes are not UTF-8.

    aiohttp reads such bytes as lone surrogates, which nothing downstream can
    encode (Redis, PostgreSQL, ``hmac``): refused here, once for every route.
    """
    for name, value in request.headers.items():
        if not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:
                raise JsonError(400, f"the {name} header is not valid UTF-8") from None
    return await handler(request)


async def parse_body(
    request: web.Request, model: type[M], *, context: dict[str, Any] | None = None
) -> M:
    """The request's JSON body as ``model``, or a :class:`JsonError` (400, 413 or 422).

    ``context`` reaches the model's validators (limits that come from settings).
    """
    raw = await request.read()
    if not raw.strip():
        raise JsonError(422, [_problem("body", (), "Field required", "missing")])
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise JsonError(400, "request body is not valid JSON") from None
    try:
        return model.model_validate(data, context=context)
    except PydanticValidationError as exc:
        raise unprocessable("body", exc) from None


def parse_query(request: web.Request, model: type[P]) -> P:
    """The request's query string as ``model``, or a 422 :class:`JsonError`."""
    return _parse("query", dict(request.query), model)


def parse_path(request: web.Request, model: type[P]) -> P:
    """The route's ``{name}`` segments as ``model``, or a 422 :class:`JsonError`."""
    return _parse("path", dict(request.match_info), model)


def parse_headers(request: web.Request, model: type[P]) -> P:
    """The headers ``model`` declares (field aliases are header names), or a 422."""
    names = [field.alias or name for name, field in model.model_fields.items()]
    present = {name: request.headers[name] for name in names if name in request.headers}
    return _parse("header", present, model)


def _parse(where: Where, values: dict[str, str], model: type[P]) -> P:
    try:
        return model.model_validate(values)
    except PydanticValidationError as exc:
        raise unprocessable(where, exc) from None


def unprocessable(where: Where, exc: PydanticValidationError) -> JsonError:
    """422 naming every offending field of ``where``, in FastAPI's shape."""
    problems = [
        _problem(where, error["loc"], error["msg"], error["type"])
        for error in exc.errors(include_url=False, include_input=False)
    ]
    return JsonError(422, problems)


def _problem(where: Where, loc: tuple[int | str, ...], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": [where, *loc], "msg": msg, "type": kind}
