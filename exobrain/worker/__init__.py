"""The orchestrator's worker side: JetStream jobs run by handlers, each job's lifecycle recorded.

Runs as ``exobrain worker`` or inside the service (``JOB_WORKER_IN_PROCESS``,
the ``exobrain dev`` default). Delivery is at least once; a job's effect is
exactly once when written through :attr:`JobContext.connection`, and must be
idempotent by job id otherwise (see :mod:`._delivery`).
"""

from exobrain.jobs.handling import Handler, Job, JobContext, MalformedJob

from ._consumer import JobWorker, durable_name
from ._delivery import RetryPolicy
from ._handlers import HandlerNotFound, handlers_for, imported
from ._process import serve

__all__ = [
    "Handler",
    "HandlerNotFound",
    "Job",
    "JobContext",
    "JobWorker",
    "MalformedJob",
    "RetryPolicy",
    "durable_name",
    "handlers_for",
    "imported",
    "serve",
]
