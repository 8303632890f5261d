"""``JobOrchestrator``: validate, publish, answer the job id (one job, or a batch in order)."""

from __future__ import annotations

import grpc

from exobrain.jobs import Enqueued, EnqueueUnavailable, InvalidJob, JobPublisher
from exobrain.proto import job_orchestrator_pb2 as pb
from exobrain.proto import job_orchestrator_pb2_grpc as pb_grpc


class JobOrchestratorService(pb_grpc.JobOrchestratorServicer):
    def __init__(self, publisher: JobPublisher) -> None:
        self._publisher = publisher

    async def EnqueueJob(
        self,
        request: pb.EnqueueJobRequest,
        context: grpc.aio.ServicerContext[pb.EnqueueJobRequest, pb.EnqueueJobReply],
    ) -> pb.EnqueueJobReply:
        try:
            job_id = await self._publisher.enqueue(request)
        except InvalidJob as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except EnqueueUnavailable as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        return pb.EnqueueJobReply(job_id=job_id)

    async def EnqueueJobs(
        self,
        request: pb.EnqueueJobsRequest,
        context: grpc.aio.ServicerContext[pb.EnqueueJobsRequest, pb.EnqueueJobsReply],
    ) -> pb.EnqueueJobsReply:
        outcomes = await self._publisher.enqueue_batch(request.jobs)
        return pb.EnqueueJobsReply(outcomes=[_outcome(outcome) for outcome in outcomes])


def _outcome(enqueued: Enqueued) -> pb.EnqueueJobOutcome:
    if isinstance(enqueued, str):
        return pb.EnqueueJobOutcome(job_id=enqueued)
    code = pb.INVALID_ARGUMENT if isinstance(enqueued, InvalidJob) else pb.UNAVAILABLE
    return pb.EnqueueJobOutcome(code=code, error=str(enqueued))
