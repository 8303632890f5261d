"""A job as its handler sees it, and the handler's signature (the worker runs them)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from exobrain.store.pool import Connection


class MalformedJob(ValueError):
    """The message is not a job envelope: no attempt can succeed, it goes to the dead letters."""


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    type: str
    #: The envelope's ``correlation_id``: the user the job works for.
    user_id: str
    payload: Any
    created_at: str


@dataclass(frozen=True, slots=True)
class JobContext:
    job: Job
    #: 1 for the first delivery; JetStream counts redeliveries too.
    attempt: int
    #: In the transaction that records ``SUCCEEDED``: what a handler writes here is
    #: committed exactly once, with its job's success, or not at all.
    connection: Connection


#: Runs one job; returns a short detail for its ``SUCCEEDED`` status, or raises to fail
#: the attempt. Effects outside ``context.connection`` must be idempotent by job id: a
#: worker lost mid-job leaves them half done, and the next attempt runs the job again.
Handler = Callable[[JobContext], Awaitable[str | None]]


def parse(data: bytes) -> Job:
    try:
        envelope = orjson.loads(data)
        job = Job(
            str(envelope["job_id"]),
            str(envelope["job_type"]),
            str(envelope["correlation_id"]),
            envelope["payload"],
            str(envelope["created_at"]),
        )
        uuid.UUID(job.id)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise MalformedJob(f"not a job envelope: {exc!r}") from None
    return job
