"""What each route takes and answers, declared on its handler.

One source for both sides of the contract: the handler validates with the
models it declares here (:mod:`exobrain.http.validation`), and the OpenAPI
document (:mod:`exobrain.http.docs`) is generated from the same declaration.

    @routes.get("/api/users/me")
    @operation(security=USER, outage=True, responses={200: Reply("The user", Me)})
    @authenticated
    async def me(request: web.Request, principal: Principal) -> web.Response: ...

The answers every operation of a kind shares are added here, once: any may
answer 400 (a header that is not UTF-8); a body brings 400 (not JSON), 413
(too large) and 422 (invalid); query and header
parameters bring 422; a session brings 401; the ops token 401 and 403;
``outage`` brings 503 (PostgreSQL or Redis unavailable). The document adds
what middlewares answer by method (:func:`with_answer`): 403 for a cross-site
unsafe request (:mod:`exobrain.http.csrf`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from pydantic import BaseModel
from typing_extensions import TypedDict

from .validation import Params

_ATTRIBUTE = "__exobrain_operation__"

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class Detail(TypedDict):
    """Every error but a validation error: what went wrong, in words."""

    detail: str


class ValidationProblem(TypedDict):
    """One offending field: where (``["body", "email"]``, ``["query", "limit"]``), why."""

    loc: list[str | int]
    msg: str
    type: str


class ValidationErrors(TypedDict):
    """Every offending field of a request, as FastAPI reports them; never the input."""

    detail: list[ValidationProblem]


@dataclass(frozen=True, slots=True)
class Header:
    """A response header: what it says and its JSON schema."""

    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = True


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer of an operation: its body's type (described by pydantic), media type and
    headers; ``alternatives`` are other media types it may come as, with their bodies.
    ``body=None`` is an answer without a body."""

    description: str
    body: Any = Detail
    media_type: str = "application/json"
    headers: Mapping[str, Header] = field(default_factory=dict)
    alternatives: Mapping[str, Any] = field(default_factory=dict)

    def content(self) -> dict[str, Any]:
        """Media type to body type; empty without a body."""
        if self.body is None:
            return {}
        return {self.media_type: self.body, **self.alternatives}


#: Security requirements: any one of the named schemes (``components.securitySchemes``).
USER = ("bearerAuth", "sessionCookie")
OPS = ("opsToken",)

RETRY_AFTER = Header("Seconds to wait before trying again.", {"type": "integer", "minimum": 0})

#: Shared answers.
BAD_HEADER = Reply("A header's bytes are not UTF-8 (the header is named).")
INVALID_JSON = Reply("The body is not JSON or not UTF-8, or a header is not UTF-8.")
TOO_LARGE = Reply("The body is larger than 1 MiB.")
INVALID = Reply("A field is invalid: each one is named.", ValidationErrors)
UNAUTHORIZED = Reply(
    "No valid bearer token or session cookie.",
    headers={"WWW-Authenticate": Header("`Bearer`: the scheme to authenticate with.")},
)
OPS_UNAUTHORIZED = Reply(
    "`Authorization: Bearer $OPS_TOKEN` is missing or wrong.",
    headers={"WWW-Authenticate": UNAUTHORIZED.headers["WWW-Authenticate"]},
)
OPS_DISABLED = Reply("`OPS_TOKEN` is not set (outside `APP_ENV=local`): ops endpoints are off.")
UNAVAILABLE = Reply(
    "A dependency this request needs (PostgreSQL, Redis) is unavailable; try again later.",
    headers={"Retry-After": Header(RETRY_AFTER.description, RETRY_AFTER.schema, required=False)},
)


def throttled(description: str) -> Reply:
    """A 429 whose ``Retry-After`` says when to try again."""
    return Reply(description, headers={"Retry-After": RETRY_AFTER})


@dataclass(frozen=True, slots=True)
class Operation:
    """Everything the contract says about one route; ``responses`` is complete."""

    responses: Mapping[int, Reply]
    body: type[BaseModel] | None = None
    body_required: bool = True
    query: type[Params] | None = None
    path: type[Params] | None = None
    headers: type[Params] | None = None
    security: tuple[str, ...] = ()


def operation(
    *,
    responses: Mapping[int, Reply],
    body: type[BaseModel] | None = None,
    body_required: bool = True,
    query: type[Params] | None = None,
    path: type[Params] | None = None,
    headers: type[Params] | None = None,
    security: tuple[str, ...] = (),
    outage: bool = False,
) -> Callable[[F], F]:
    """Declare a handler's contract; the answers shared by its kind are added.

    ``outage``: the route needs PostgreSQL or Redis, so it may answer 503.
    """
    shared: dict[int, Reply] = {400: BAD_HEADER}
    if body is not None:
        shared |= {400: INVALID_JSON, 413: TOO_LARGE, 422: INVALID}
    if query or path or headers:
        shared[422] = INVALID
    if security == USER:
        shared[401] = UNAUTHORIZED
    if security == OPS:
        shared |= {401: OPS_UNAUTHORIZED, 403: OPS_DISABLED}
    if outage:
        shared[503] = UNAVAILABLE
    merged = shared | {
        status: _also(reply, shared[status]) if status in shared else reply
        for status, reply in responses.items()
    }
    declared = Operation(
        responses=dict(sorted(merged.items())),
        body=body,
        body_required=body_required,
        query=query,
        path=path,
        headers=headers,
        security=security,
    )

    def declare(handler: F) -> F:
        setattr(handler, _ATTRIBUTE, declared)
        return handler

    return declare


def with_answer(contract: Operation, status: int, reply: Reply) -> Operation:
    """``contract`` with one more answer a middleware may give."""
    responses = dict(contract.responses)
    responses[status] = _also(responses[status], reply) if status in responses else reply
    return replace(contract, responses=dict(sorted(responses.items())))


def _also(reply: Reply, shared: Reply) -> Reply:
    """A route's own answer for a status that is also a shared one: both descriptions."""
    if reply.body is not shared.body:
        return reply
    return replace(reply, description=f"{reply.description} Or: {shared.description}")


def declared(handler: object) -> Operation | None:
    """The contract of a route's handler, if it has one."""
    found = getattr(handler, _ATTRIBUTE, None)
    return found if isinstance(found, Operation) else None
