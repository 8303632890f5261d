"""What operators see: request metrics, the actor tree, Prometheus text.

``/api/ops/*`` and ``/metrics`` need ``Authorization: Bearer $OPS_TOKEN`` when
``OPS_TOKEN`` is set; without it they are open under ``APP_ENV=local`` and
refused everywhere else.
"""

from __future__ import annotations

import hmac
import os
import time

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from .actors import ACTORS, METRICS
from .cluster import CLUSTER
from .contract import OPS, Reply, operation
from .errors import JsonError, json_response
from .resources import SETTINGS

routes = web.RouteTableDef()


class Instance(TypedDict):
    id: str
    pid: int
    #: The users whose chat sessions this instance owns.
    owned_sessions: list[str]


class ActorFailure(TypedDict):
    at: str
    kind: str
    message: str


class ActorNode(BaseModel):
    """A supervisor (``failure``, ``children``), a child (``restart``, ``restarts``,
    ``last_failure``, and ``children`` when it supervises; null when they did not answer),
    or a chat session (``epoch``: its lease's)."""

    name: str
    class_: str | None = Field(alias="class")
    state: str
    mailbox: int
    uptime_s: float | None = None
    restart: str | None = None
    restarts: int | None = None
    last_failure: ActorFailure | None = None
    failure: str | None = None
    epoch: int | None = None
    children: list[ActorNode] | None = None


class ActorsReport(TypedDict):
    instance: Instance
    tree: ActorNode
    #: Subtrees that failed for good.
    failed: list[str]
    closing: bool


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request by its route template (not its raw path)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request.app[METRICS].observe_request(
            request.method, route, status, time.perf_counter() - started
        )


def _authorize(request: web.Request) -> None:
    settings = request.app[SETTINGS]
    if settings.ops_token is None:
        if settings.is_local:
            return
        raise JsonError(403, "ops endpoints are disabled: set OPS_TOKEN")
    if not presents_ops_token(request):
        raise JsonError(401, "ops token required", headers={"WWW-Authenticate": "Bearer"})


def sees_details(request: web.Request) -> bool:
    """Whether the request may see operator detail such as readiness errors (hosts, ports,
    driver messages): under ``APP_ENV=local``, or with the ops token."""
    return request.app[SETTINGS].is_local or presents_ops_token(request)


def presents_ops_token(request: web.Request) -> bool:
    """Whether the request carries ``Authorization: Bearer $OPS_TOKEN`` (False when unset)."""
    token = request.app[SETTINGS].ops_token
    if token is None:
        return False
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.encode(errors="surrogateescape"), expected
    )


@routes.get("/api/ops/actors")
@operation(security=OPS, responses={200: Reply("This instance and its actors.", ActorsReport)})
async def actors(request: web.Request) -> web.Response:
    """This instance (id, pid, the users it owns) and its supervisor tree: state, mailbox
    depth, restarts, last failure and uptime per actor."""
    _authorize(request)
    system, cluster = request.app[ACTORS], request.app[CLUSTER]
    tree = await system.snapshot()
    owned = cluster.ownership.owned()
    instance = {
        "id": cluster.instance_id,
        "pid": os.getpid(),
        "owned_sessions": sorted(str(user_id) for user_id in owned),
    }
    return json_response(
        {
            "instance": instance,
            "tree": tree,
            "failed": sorted(system.failures),
            "closing": system.closing.is_set(),
        }
    )


@routes.get("/metrics")
@operation(
    security=OPS,
    responses={200: Reply("The metrics.", str, media_type="text/plain")},
)
async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics in the text exposition format."""
    _authorize(request)
    registry = request.app[METRICS]
    registry.observe_tree(await request.app[ACTORS].snapshot())
    registry.chat_leases_held.set(len(request.app[CLUSTER].ownership.owned()))
    return web.Response(body=registry.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
