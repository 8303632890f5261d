"""``/api/knowledge``: dispatch uncommitted journal messages as knowledge-update jobs.

The handler only asks the KnowledgeDispatchActor, which owns the outbox.
``KNOWLEDGE_UPDATE_USE_ORCHESTRATOR_ENQUEUE`` chooses the transport and nothing
else: jobs go through the orchestrator's ``EnqueueJob`` over gRPC, or (rollback
path) straight to JetStream through the same publisher the orchestrator uses.
With ``JOB_ORCHESTRATOR_IN_PROCESS`` the orchestrator itself runs in this
process on a free port, and the client is pointed at it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from exobrain.actors.knowledge import (
    KnowledgeDispatchActor,
    RequestUpdate,
    UpdateResult,
    recent,
    request_update,
)
from exobrain.auth import Principal
from exobrain.http.actors import ACTOR_CHILDREN, ACTORS
from exobrain.http.auth.authentication import authenticated
from exobrain.http.contract import USER, Reply, operation
from exobrain.http.errors import JsonError, json_response
from exobrain.http.health import READINESS
from exobrain.http.journal.params import Reference
from exobrain.http.resources import NATS, PG_POOL, SETTINGS
from exobrain.http.validation import parse_body
from exobrain.jobs import Enqueue, job_publisher
from exobrain.orchestrator import OrchestratorClient, start_orchestrator
from exobrain.supervision import ActorUnavailable, ChildSpec

from . import jobs

log = logging.getLogger(__name__)

ENQUEUE: web.AppKey[Enqueue] = web.AppKey("knowledge_enqueue")
#: Where the in-process orchestrator listens, when there is one.
ORCHESTRATOR_TARGET = web.AppKey("orchestrator_target", str)
#: Outbox rows listed by ``GET /api/knowledge/updates``.
RECENT_UPDATES = 50

routes = web.RouteTableDef()


class UpdateBody(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    journal_reference: Reference | None = Field(
        default=None, description="One journal's day; every journal when absent."
    )


class UpdateAnswer(TypedDict):
    """``job_id`` is the first job's (empty unless ``queued``)."""

    job_id: str
    status: Literal["queued", "nothing_to_update", "pending"]
    job_ids: list[str]


class Dispatch(TypedDict):
    """Part of a journal sent (or to be sent) to the knowledge base as one job."""

    id: str
    journal_reference: str
    part: int
    status: Literal["pending", "enqueued", "failed"]
    job_id: str | None
    message_count: int
    estimated_tokens: int
    attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime


class Dispatches(TypedDict):
    updates: list[Dispatch]


def setup_knowledge(app: web.Application) -> None:
    """Register the enqueue transport (after NATS), the dispatch actor and the routes."""
    if app[SETTINGS].job_orchestrator_in_process:
        app.cleanup_ctx.append(in_process_orchestrator_ctx)
    app.cleanup_ctx.append(enqueue_ctx)
    app[ACTOR_CHILDREN].append(dispatch_child)
    app.router.add_routes(routes)
    app.router.add_routes(jobs.routes)


async def in_process_orchestrator_ctx(app: web.Application) -> AsyncIterator[None]:
    orchestrator = await start_orchestrator(app[SETTINGS], app[NATS], "127.0.0.1:0")
    app[ORCHESTRATOR_TARGET] = f"127.0.0.1:{orchestrator.port}"
    log.info("job orchestrator in-process at %s", app[ORCHESTRATOR_TARGET])
    yield
    await orchestrator.stop(grace=1.0)


async def enqueue_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    if not settings.knowledge_update_use_orchestrator_enqueue:
        publisher = job_publisher(app[NATS], settings)
        await publisher.ensure_stream()
        log.info("knowledge updates publish to JetStream directly (legacy producer path)")
        app[ENQUEUE] = publisher.enqueue
        yield
        return
    target = app.get(ORCHESTRATOR_TARGET, settings.job_orchestrator_grpc_target)
    client = OrchestratorClient(target, deadline=settings.job_orchestrator_connect_timeout_seconds)
    app[ENQUEUE] = client.enqueue
    app[READINESS].add("orchestrator", client.check)
    yield
    app[READINESS].remove("orchestrator")
    await client.close()


def dispatch_child(app: web.Application) -> ChildSpec:
    settings, pool, loop, enqueue = (
        app[SETTINGS],
        app[PG_POOL],
        asyncio.get_running_loop(),
        app[ENQUEUE],
    )
    return ChildSpec(
        "knowledge",
        lambda supervision: KnowledgeDispatchActor.start(
            supervision,
            pool=pool,
            loop=loop,
            enqueue=enqueue,
            max_tokens=settings.knowledge_update_max_tokens,
            enqueue_timeout=settings.job_orchestrator_connect_timeout_seconds,
            resume_interval=settings.knowledge_dispatch_resume_interval_seconds,
        ),
    )


@routes.post("/api/knowledge/update")
@operation(
    body=UpdateBody,
    security=USER,
    outage=True,
    responses={
        200: Reply("Queued, or nothing to update.", UpdateAnswer),
        202: Reply("Stored; the orchestrator takes the jobs later.", UpdateAnswer),
        502: Reply("The job orchestrator refused the update."),
    },
)
@authenticated
async def update(request: web.Request, principal: Principal) -> web.Response:
    """Send the uncommitted journal messages to the knowledge base as jobs.

    `{journal_reference?}` (`YYYY/MM/DD`; all journals when absent). 200
    `{job_id, status: "queued", job_ids}` (job_id is the first job's); 200 with
    status `nothing_to_update` when every message is already committed; 202
    `{job_id: "", status: "pending", job_ids}` when the orchestrator could not
    take every job within its deadline: they are retried in the background.
    """
    body = await parse_body(request, UpdateBody)
    settings = request.app[SETTINGS]
    command = RequestUpdate(principal.user_id, body.journal_reference)
    # Behind a resume round and our own enqueue, each bounded by the orchestrator's deadline.
    timeout = 2 * settings.job_orchestrator_connect_timeout_seconds + 60
    try:
        result = await request_update(
            request.app[ACTORS].handle("knowledge"), command, timeout=timeout
        )
    except ActorUnavailable as exc:
        raise JsonError(503, f"knowledge dispatch unavailable: {exc}") from None
    except TimeoutError:  # the command stays queued: its rows are written and resumed
        result = UpdateResult("pending")
    if result.status == "rejected":
        raise JsonError(502, f"the job orchestrator refused the update: {'; '.join(result.errors)}")
    first = result.job_ids[0] if result.status == "queued" else ""
    return json_response(
        UpdateAnswer(job_id=first, status=result.status, job_ids=list(result.job_ids)),
        status=202 if result.status == "pending" else 200,
    )


@routes.get("/api/knowledge/updates")
@operation(
    security=USER,
    outage=True,
    responses={200: Reply("The most recent updates, newest first.", Dispatches)},
)
@authenticated
async def updates(request: web.Request, principal: Principal) -> web.Response:
    """The user's 50 most recent knowledge-update jobs, newest first.

    `{updates: [...]}`, each `id, journal_reference, part, status
    (pending|enqueued|failed), job_id, message_count, estimated_tokens, attempts,
    last_error, created_at, updated_at`.
    """
    rows = await recent(request.app[PG_POOL], principal.user_id, RECENT_UPDATES)
    return json_response({"updates": rows})
