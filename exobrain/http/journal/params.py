"""Path and query parameters of ``/api/journal``, refused as FastAPI refuses them.

A bad value is 422 with one entry per parameter (``{"detail": [{"loc": ["query",
"limit"], "msg": ..., "type": ...}]}``), never a 500: a cursor too large for
PostgreSQL's bigint or a date that does not exist (``2025/02/30``) is caught
here. Unknown query parameters are ignored, as FastAPI does.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, WithJsonSchema

from exobrain.http.validation import BIGINT, NonBlankText, Params

_YEAR = "(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_LEAP_YEAR = "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:0[48]|[2468][048]|[13579][26])00)"
_MONTH_DAY = (
    "(?:(?:0[13578]|1[02])/(?:0[1-9]|[12][0-9]|3[01])"
    "|(?:0[469]|11)/(?:0[1-9]|[12][0-9]|30)"
    "|02/(?:0[1-9]|1[0-9]|2[0-8]))"
)
#: Exactly the days of the calendar (leap years included), so the OpenAPI document
#: states the rule itself, not an approximation.
REAL_DATE = re.compile(f"^(?:{_YEAR}/{_MONTH_DAY}|{_LEAP_YEAR}/02/29)$")


def _real_date(reference: str) -> str:
    if REAL_DATE.fullmatch(reference):
        return reference
    raise ValueError("must be a real date as YYYY/MM/DD")


Reference = Annotated[
    str,
    AfterValidator(_real_date),
    WithJsonSchema({"type": "string", "pattern": REAL_DATE.pattern, "examples": ["2025/01/14"]}),
]


class EntriesQuery(Params):
    limit: int = Field(default=20, ge=1, le=100)
    cursor: Reference | None = Field(
        default=None, description="A reference: only entries strictly older."
    )


class MessagesQuery(Params):
    limit: int = Field(default=100, ge=1, le=500)
    cursor: int | None = Field(
        default=None, ge=1, le=BIGINT, description="A sequence: only messages below it."
    )


class TodayQuery(Params):
    create: bool = Field(default=False, description="Create today's entry when it is missing.")


class SearchQuery(Params):
    q: NonBlankText = Field(max_length=200, description="What to look for.")
    limit: int = Field(default=20, ge=1, le=100)


class ExportQuery(Params):
    format: Literal["markdown", "json"] = "markdown"


class ReferencePath(Params):
    reference: Reference = Field(description="The journal's day, `YYYY/MM/DD` (UTC).")
