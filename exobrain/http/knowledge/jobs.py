"""``/api/knowledge/update/{job_id}``: a knowledge-update job's state, now or as it changes.

The ``jobs`` row is the truth; the workers' status events
(``<JOB_SUBJECT_PREFIX>.status.<job_id>``, core NATS) make a watch hear a
transition at once. Those events may be lost, so a quiet watch reads the row
again every ``JOB_WATCH_RECHECK_SECONDS``; each transition carries a version,
so the two sources never send one state twice or an older after a newer.
Only the job's user sees it: any other caller gets the 404 of an unknown job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import nats.errors
import orjson
from aiohttp import hdrs, web
from nats.aio.msg import Msg
from typing_extensions import TypedDict

from exobrain.auth import Principal
from exobrain.config import Settings
from exobrain.http.auth.authentication import authenticated
from exobrain.http.contract import INVALID, USER, Reply, operation
from exobrain.http.errors import JsonError, json_response
from exobrain.http.resources import NATS, PG_POOL, SETTINGS
from exobrain.http.validation import Params, parse_path
from exobrain.jobs.lifecycle import JobState, JobStatus, status_subject
from exobrain.jobs.records import current, timeline

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


class JobPath(Params):
    job_id: uuid.UUID


class JobEvent(TypedDict):
    """A job's state at one transition (the `status` event of a watch)."""

    job_id: str
    state: JobState
    attempt: int
    detail: str | None
    terminal: bool
    emitted_at: datetime


class Job(JobEvent):
    """The job's state now, with when it was created, first started and finished."""

    job_type: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


NO_JOB = Reply("No such job, or another user's.")


def _owned(status: JobStatus | None, principal: Principal) -> JobStatus:
    if status is None or status.user_id != str(principal.user_id):
        raise JsonError(404, "job not found")
    return status


@routes.get("/api/knowledge/update/{job_id}")
@operation(
    path=JobPath,
    security=USER,
    outage=True,
    responses={200: Reply("The job's state.", Job), 404: NO_JOB, 422: INVALID},
)
@authenticated
async def job_state(request: web.Request, principal: Principal) -> web.Response:
    """The job's current state.

    `{job_id, state, attempt, detail, terminal, emitted_at, job_type, created_at,
    started_at, finished_at}`; `state` is `ENQUEUED_OR_PENDING` until a worker
    takes the job, then `STARTED`, `RETRYING`, `SUCCEEDED` or `FAILED_FINAL`.
    404 for unknown jobs and other users' jobs; 422 when `job_id` is not a UUID.
    """
    job_id = parse_path(request, JobPath).job_id
    found = await timeline(request.app[PG_POOL], job_id)
    status = _owned(found[0] if found else None, principal)
    times = found[1] if found else {}
    return json_response(status.event() | {"job_type": status.job_type} | times)


@routes.get("/api/knowledge/update/{job_id}/watch")
@operation(
    path=JobPath,
    security=USER,
    outage=True,
    responses={
        200: Reply(
            "Server-Sent Events: `status` (a `JobEvent`) now and at every change, then one"
            " `done {job_id, state}`; `: keep-alive` comments meanwhile.",
            str,
            media_type="text/event-stream",
        ),
        404: NO_JOB,
        422: INVALID,
    },
)
@authenticated
async def watch_job(request: web.Request, principal: Principal) -> web.StreamResponse:
    """The job's state as Server-Sent Events until it finishes.

    `status {job_id, state, attempt, detail, terminal, emitted_at}` now and at
    every change, then exactly one `done {job_id, state}` after the terminal
    one (at once for a finished job); `: keep-alive` comments meanwhile. 404
    for unknown jobs and other users' jobs.
    """
    job_id = parse_path(request, JobPath).job_id
    app = request.app
    settings, client, pool = app[SETTINGS], app[NATS], app[PG_POOL]
    heard: asyncio.Queue[JobStatus] = asyncio.Queue()

    async def receive(message: Msg) -> None:
        heard.put_nowait(JobStatus.decode(message.data))

    # Listen before reading the row: a change committed after the read is then heard.
    subject = status_subject(settings.job_subject_prefix, str(job_id))
    subscription = await client.subscribe(subject, cb=receive)
    try:
        with contextlib.suppress(nats.errors.Error):  # the rechecks cover a late subscription
            await client.flush(timeout=math.ceil(settings.readiness_timeout_seconds))
        status = _owned(await current(pool, job_id), principal)
        response = web.StreamResponse(
            headers={
                hdrs.CONTENT_TYPE: "text/event-stream",
                hdrs.CACHE_CONTROL: "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        try:
            await _follow(response, status, heard, lambda: current(pool, job_id), settings)
        except ConnectionError:
            log.debug("the watcher of job %s went away", job_id)
    finally:
        await subscription.unsubscribe()
    return response


async def _follow(
    response: web.StreamResponse,
    status: JobStatus,
    heard: asyncio.Queue[JobStatus],
    reread: Callable[[], Awaitable[JobStatus | None]],
    settings: Settings,
) -> None:
    """Send every newer state until the terminal one, then ``done``."""
    sent = 0
    while True:
        if status.version > sent:
            await _send(response, "status", status.event())
            sent = status.version
            if status.state.terminal:
                await _send(response, "done", {"job_id": status.job_id, "state": status.state})
                return
        try:
            status = await asyncio.wait_for(heard.get(), timeout=settings.job_watch_recheck_seconds)
        except TimeoutError:
            status = await reread() or status
            if status.version <= sent:
                await response.write(b": keep-alive\n\n")


async def _send(response: web.StreamResponse, event: str, data: dict[str, Any]) -> None:
    await response.write(b"event: %s\ndata: %s\n\n" % (event.encode(), orjson.dumps(data)))
