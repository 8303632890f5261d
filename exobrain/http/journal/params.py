"""Path and query parameters of ``/api/journal``, refused as FastAPI refuses them.

A bad value is 422 with one entry per parameter (``{"detail": [{"loc": ["query",
"limit"], "msg": ..., "type": ...}]}``), never a 500: a cursor too large for
PostgreSQL's bigint or a date that does not exist (``2025/02/30``) is caught
here. Unknown query parameters are ignored, as FastAPI does.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from aiohttp import web
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from exobrain.http.errors import JsonError

_REFERENCE = re.compile(r"\d{4}/\d{2}/\d{2}")
_BIGINT = 2**63 - 1


def _real_date(reference: str) -> str:
    try:
        if _REFERENCE.fullmatch(reference):
            datetime.strptime(reference, "%Y/%m/%d")
            return reference
    except ValueError:
        pass
    raise ValueError("must be a real date as YYYY/MM/DD")


Reference = Annotated[str, AfterValidator(_real_date)]
_REFERENCE_ADAPTER: TypeAdapter[str] = TypeAdapter(Reference)


class _Query(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class EntriesQuery(_Query):
    limit: int = Field(default=20, ge=1, le=100)
    #: A reference: the page holds entries strictly older.
    cursor: Reference | None = None


class MessagesQuery(_Query):
    limit: int = Field(default=100, ge=1, le=500)
    #: A sequence: the page holds messages strictly below it.
    cursor: int | None = Field(default=None, ge=1, le=_BIGINT)


class TodayQuery(_Query):
    create: bool = False


class SearchQuery(_Query):
    q: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    limit: int = Field(default=20, ge=1, le=100)


class ExportQuery(_Query):
    format: Literal["markdown", "json"] = "markdown"


Q = TypeVar("Q", bound=_Query)


def parse_query(request: web.Request, model: type[Q]) -> Q:
    """The request's query string as ``model``, or a 422 :class:`JsonError`."""
    try:
        return model.model_validate(dict(request.query))
    except ValidationError as exc:
        raise _unprocessable("query", exc) from None


def parse_reference(request: web.Request) -> str:
    """The ``{reference}`` path segment (``YYYY/MM/DD``, slashes unencoded), or a 422."""
    try:
        return _valid_reference(request.match_info["reference"])
    except ValidationError as exc:
        raise _unprocessable("path", exc, name="reference") from None


@functools.lru_cache(maxsize=1024)
def _valid_reference(reference: str) -> str:
    """Clients ask for the same few days over and over; ``strptime`` is not cheap."""
    return _REFERENCE_ADAPTER.validate_python(reference)


def _unprocessable(where: str, exc: ValidationError, *, name: str | None = None) -> JsonError:
    problems: list[dict[str, Any]] = [
        {
            "loc": [where, *((name,) if name else ()), *error["loc"]],
            "msg": error["msg"],
            "type": error["type"],
        }
        for error in exc.errors(include_url=False, include_input=False)
    ]
    return JsonError(422, problems)
