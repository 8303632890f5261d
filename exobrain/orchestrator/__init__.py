"""The job orchestrator: gRPC ``EnqueueJob`` publishing to NATS JetStream, and its client."""

from .client import SERVICE_NAME, OrchestratorClient
from .server import RunningOrchestrator, listen_address, serve, start_orchestrator
from .service import JobOrchestratorService

__all__ = [
    "SERVICE_NAME",
    "JobOrchestratorService",
    "OrchestratorClient",
    "RunningOrchestrator",
    "listen_address",
    "serve",
    "start_orchestrator",
]
