"""``JobOrchestrator.EnqueueJob``: validate, publish, answer the job id."""

from __future__ import annotations

import grpc

from exobrain.jobs import EnqueueUnavailable, InvalidJob, JobPublisher
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
