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
from exobrain.jobs import EnqueueBatch, job_publisher
from exobrain.orchestrator import OrchestratorClient, start_orchestrator
from exobrain.outages import DependencyUnavailable
from exobrain.supervision import ActorUnavailable, ChildSpec

from . import jobs

log = logging.getLogger(__name__)

ENQUEUE: web.AppKey[EnqueueBatch] = web.AppKey("knowledge_enqueue")
#: Where the in-process orchestrator listens, when there is one.
ORCHESTRATOR_TARGET = web.AppKey("orchestrator_target", str)
#: Outbox rows listed by ``GET /api/knowledge/updates``.
RECENT_UPDATES = 50
#: How long an update may wait for the actor to write its outbox rows, behind the updates
#: queued before it (database work only: the actor never waits for the orchestrator).
OUTBOX_TIMEOUT = 60.0

routes = web.RouteTableDef()


class UpdateBody(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    journal_reference: Reference | None = Field(
        default=None, description="One journal's day; every journal when absent."
    )


class UpdateAnswer(TypedDict):
    """``job_id`` is the first job's; ``job_ids`` every job's, whether the orchestrator has
    taken it yet (200) or not (202). Both are empty when there is nothing to update, and
    when the update still waits behind others (202)."""

    job_id: str
    status: Literal["queued", "nothing_to_update"]
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
        app[ENQUEUE] = publisher.enqueue_batch
        yield
        return
    target = app.get(ORCHESTRATOR_TARGET, settings.job_orchestrator_grpc_target)
    client = OrchestratorClient(target, deadline=settings.job_orchestrator_connect_timeout_seconds)
    app[ENQUEUE] = client.enqueue_batch
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
        202: Reply("Queued; the orchestrator takes the jobs later.", UpdateAnswer),
        502: Reply("The job orchestrator refused the update."),
    },
)
@authenticated
async def update(request: web.Request, principal: Principal) -> web.Response:
    """Send the uncommitted journal messages to the knowledge base as jobs.

    `{journal_reference?}` (`YYYY/MM/DD`; all journals when absent). 200
    `{job_id, status: "queued", job_ids}` once the orchestrator took every job
    (job_id is the first job's); 202 with the same body when it has not within
    `KNOWLEDGE_UPDATE_WAIT_SECONDS`: the jobs are recorded and follow in the
    background; 200 with status `nothing_to_update` when every message is
    already committed; 502 when the orchestrator refused every job.
    """
    body = await parse_body(request, UpdateBody)
    command = RequestUpdate(principal.user_id, body.journal_reference)
    patience = request.app[SETTINGS].knowledge_update_wait_seconds
    handle = request.app[ACTORS].handle("knowledge")
    try:
        result = await request_update(handle, command, timeout=OUTBOX_TIMEOUT, patience=patience)
    except ActorUnavailable as exc:
        raise DependencyUnavailable("knowledge dispatch", exc) from None
    except TimeoutError:  # the command stays queued: its rows are written and resumed
        result = UpdateResult("pending")
    if result.status == "rejected":
        raise JsonError(502, f"the job orchestrator refused the update: {'; '.join(result.errors)}")
    if result.status == "nothing_to_update":
        return json_response(UpdateAnswer(job_id="", status="nothing_to_update", job_ids=[]))
    job_ids = list(result.job_ids)
    return json_response(
        UpdateAnswer(job_id=next(iter(job_ids), ""), status="queued", job_ids=job_ids),
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
