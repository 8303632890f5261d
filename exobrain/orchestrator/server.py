"""The orchestrator's grpc.aio server: ``EnqueueJob`` and the standard gRPC health service.

It runs as its own process (``exobrain orchestrator``) or inside the service
(``JOB_ORCHESTRATOR_IN_PROCESS``, the ``exobrain dev`` default), sharing its
NATS connection.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from typing import Any

import grpc
import nats
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer  # health.aio, which the stubs do not know
from nats.aio.client import Client as NatsClient

from exobrain.config import Settings
from exobrain.jobs import job_publisher
from exobrain.proto import job_orchestrator_pb2_grpc as pb_grpc

from .client import SERVICE_NAME
from .service import JobOrchestratorService

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunningOrchestrator:
    server: grpc.aio.Server
    health: Any
    port: int

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING, then let calls in flight finish within ``grace`` seconds."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def start_orchestrator(
    settings: Settings, client: NatsClient, address: str
) -> RunningOrchestrator:
    """Create the jobs stream if absent, then serve on ``address`` (port 0: a free one)."""
    publisher = job_publisher(client, settings)
    await publisher.ensure_stream()
    server = grpc.aio.server()
    pb_grpc.add_JobOrchestratorServicer_to_server(JobOrchestratorService(publisher), server)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port(address)
    await server.start()
    for service in (SERVICE_NAME, ""):
        await health.set(service, health_pb2.HealthCheckResponse.SERVING)
    return RunningOrchestrator(server, health, port)


def listen_address(settings: Settings) -> str:
    """``JOB_ORCHESTRATOR_LISTEN``, else 127.0.0.1 on ``JOB_ORCHESTRATOR_GRPC_TARGET``'s port."""
    if settings.job_orchestrator_listen is not None:
        return settings.job_orchestrator_listen
    return f"127.0.0.1:{settings.job_orchestrator_grpc_target.rsplit(':', 1)[1]}"


async def serve(settings: Settings) -> int:
    """Serve until SIGINT or SIGTERM, then drain calls in flight."""
    client = await nats.connect(
        str(settings.exobrain_nats_url),
        name="exobrain-orchestrator",
        connect_timeout=settings.startup_dependency_timeout_seconds,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
    )
    try:
        address = listen_address(settings)
        orchestrator = await start_orchestrator(settings, client, address)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        host = address.rsplit(":", 1)[0]
        print(f"job orchestrator is serving at {host}:{orchestrator.port}", flush=True)
        await stopping.wait()
        log.info("job orchestrator shutting down")
        await orchestrator.stop(grace=5.0)
    finally:
        await client.close()
    return 0
