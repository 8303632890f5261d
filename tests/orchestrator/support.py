"""Helpers for tests that enqueue jobs: a JetStream stream of their own, a real orchestrator.

Test sessions may share one NATS server, and JetStream streams must not
overlap in subjects, so every test gets a stream name and subject prefix
unique to it (under the session's namespace) and deletes the stream at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
import orjson
from nats.js.errors import NotFoundError

from exobrain.config import Settings
from exobrain.orchestrator import RunningOrchestrator, start_orchestrator

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Published:
    subject: str
    msg_id: str | None
    envelope: dict[str, Any]


@dataclass(frozen=True, slots=True)
class JobsStream:
    nats_url: str
    name: str
    prefix: str

    @property
    def settings(self) -> dict[str, str]:
        """Settings overrides that point producers and orchestrators at this stream."""
        return {"job_stream_name": self.name, "job_subject_prefix": self.prefix}

    async def published(self) -> list[Published]:
        """Every message in the stream, in stream order (none when it does not exist)."""
        client = await nats.connect(self.nats_url)
        try:
            jetstream = client.jetstream()
            try:
                state = (await jetstream.stream_info(self.name)).state
            except NotFoundError:
                return []
            found: list[Published] = []
            if not state.messages:
                return found
            for sequence in range(state.first_seq, state.last_seq + 1):
                try:
                    message = await jetstream.get_msg(self.name, sequence)
                except NotFoundError:  # purged or deleted
                    continue
                headers = message.headers or {}
                assert message.subject is not None
                assert message.data is not None
                found.append(
                    Published(
                        message.subject, headers.get("Nats-Msg-Id"), orjson.loads(message.data)
                    )
                )
            return found
        finally:
            await client.close()


@contextlib.asynccontextmanager
async def jobs_stream(nats_url: str, namespace: str) -> AsyncIterator[JobsStream]:
    token = secrets.token_hex(3)
    stream = JobsStream(nats_url, f"JOBS_{namespace}_{token}", f"t{namespace}{token}.jobs")
    try:
        yield stream
    finally:
        client = await nats.connect(nats_url)
        with contextlib.suppress(NotFoundError):
            await client.jetstream().delete_stream(stream.name)
        await client.close()


@contextlib.asynccontextmanager
async def orchestrator(
    settings: Settings, address: str = "127.0.0.1:0"
) -> AsyncIterator[RunningOrchestrator]:
    """A real orchestrator on its own NATS connection, stopped at the end."""
    client = await nats.connect(str(settings.exobrain_nats_url))
    running = await start_orchestrator(settings, client, address)
    try:
        yield running
    finally:
        await running.stop(grace=1.0)
        await client.close()


async def eventually(check: Callable[[], Awaitable[T]], *, timeout: float = 15.0) -> T:
    """Poll ``check`` until it returns a truthy value or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)
