"""The producer's side of the orchestrator: a grpc.aio channel on the event loop.

Each call has ``deadline`` seconds in all. UNAVAILABLE and DEADLINE_EXCEEDED
are retried within it with exponential backoff (each attempt gets at most half
the deadline, so a stuck attempt leaves room for another); every request
carries its idempotency key, so a retry after a lost reply enqueues nothing
new. INVALID_ARGUMENT is final. A batch goes out as one ``EnqueueJobs`` call;
an orchestrator without it (UNIMPLEMENTED: an older one, or the reference's)
gets ``EnqueueJob`` calls one at a time from then on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from exobrain.jobs import Enqueued, EnqueueUnavailable, InvalidJob, one_at_a_time
from exobrain.proto import job_orchestrator_pb2 as pb
from exobrain.proto import job_orchestrator_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["JobOrchestrator"].full_name
RETRYABLE = frozenset((grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED))
#: Reconnect quickly once the orchestrator is back (gRPC's default backoff reaches 120 s).
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
]

Request = TypeVar("Request")
Reply = TypeVar("Reply")


class _Unimplemented(Exception):
    """The orchestrator does not know the method."""


class OrchestratorClient:
    def __init__(self, target: str, *, deadline: float) -> None:
        self.target = target
        self._deadline = deadline
        self._channel = grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
        self._stub = pb_grpc.JobOrchestratorStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)
        self._enqueue_each = one_at_a_time(self.enqueue)
        self._batches = True

    async def enqueue(self, request: pb.EnqueueJobRequest) -> str:
        reply = await self._call(self._stub.EnqueueJob, request)
        return reply.job_id

    async def enqueue_batch(self, requests: Sequence[pb.EnqueueJobRequest]) -> list[Enqueued]:
        """Every job in one call, published in order; one outcome each."""
        if not self._batches:
            return await self._enqueue_each(requests)
        try:
            reply = await self._call(self._stub.EnqueueJobs, pb.EnqueueJobsRequest(jobs=requests))
        except _Unimplemented:
            self._batches = False
            return await self._enqueue_each(requests)
        except (InvalidJob, EnqueueUnavailable) as exc:
            return [exc] * len(requests)
        return [_enqueued(outcome) for outcome in reply.outcomes]

    async def _call(self, method: Callable[..., Awaitable[Reply]], request: Request) -> Reply:
        deadline = time.monotonic() + self._deadline
        backoff = 0.05
        while True:
            remaining = deadline - time.monotonic()
            try:
                return await method(request, timeout=min(remaining, self._deadline / 2))
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.INVALID_ARGUMENT:
                    raise InvalidJob(exc.details() or "invalid job") from exc
                if code == grpc.StatusCode.UNIMPLEMENTED:
                    raise _Unimplemented from exc
                if code not in RETRYABLE or time.monotonic() + backoff >= deadline:
                    raise EnqueueUnavailable(
                        f"orchestrator at {self.target}: {code.name}: {exc.details()}"
                    ) from exc
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    async def check(self) -> None:
        """Readiness: the orchestrator's gRPC health service reports SERVING."""
        try:
            response = await self._health.Check(
                health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=self._deadline
            )
        except grpc.aio.AioRpcError as exc:
            raise ConnectionError(f"{self.target}: {exc.code().name}") from exc
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            raise ConnectionError(f"{self.target}: not serving")

    async def close(self) -> None:
        await self._channel.close(grace=None)


def _enqueued(outcome: pb.EnqueueJobOutcome) -> Enqueued:
    if outcome.code == pb.OK:
        return outcome.job_id
    if outcome.code == pb.INVALID_ARGUMENT:
        return InvalidJob(outcome.error)
    return EnqueueUnavailable(outcome.error)
