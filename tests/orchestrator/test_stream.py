"""The jobs stream keeps jobs and dead letters, never status events, and a stream made
before that (over all of ``<prefix>.>``) is narrowed, and its status events purged, on start."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NatsClient

from exobrain.config import Settings
from exobrain.jobs import job_publisher, stream_subjects
from exobrain.jobs.lifecycle import status_subject

from .support import JobsStream
from .test_service import knowledge_request


@pytest.fixture
async def connection(jobs_settings: Settings) -> AsyncIterator[NatsClient]:
    created = await nats.connect(str(jobs_settings.exobrain_nats_url))
    yield created
    await created.close()


async def test_a_new_stream_takes_jobs_and_dead_letters_but_not_status_events(
    connection: NatsClient, jobs_settings: Settings, stream: JobsStream
) -> None:
    publisher = job_publisher(connection, jobs_settings)
    await publisher.ensure_stream()
    jetstream = connection.jetstream()
    info = await jetstream.stream_info(stream.name)
    assert info.config.subjects == stream_subjects(stream.prefix)
    assert info.config.duplicate_window == jobs_settings.job_stream_duplicate_window_seconds
    await connection.publish(status_subject(stream.prefix, str(uuid.uuid4())), b"{}")
    await jetstream.publish(f"{stream.prefix}.a.b.c.d.dead", b"{}")  # the deepest job type
    await publisher.enqueue(knowledge_request(key=str(uuid.uuid4())))  # after the event
    subjects = [published.subject for published in await stream.published()]
    assert subjects == [
        f"{stream.prefix}.a.b.c.d.dead",
        f"{stream.prefix}.knowledge.update.requested",
    ]


async def test_a_stream_over_the_whole_prefix_is_narrowed_and_its_status_events_purged(
    connection: NatsClient, jobs_settings: Settings, stream: JobsStream
) -> None:
    jetstream = connection.jetstream()
    await jetstream.add_stream(name=stream.name, subjects=[f"{stream.prefix}.>"])
    job = f"{stream.prefix}.knowledge.update.requested"
    await jetstream.publish(job, b"{}")
    await jetstream.publish(status_subject(stream.prefix, str(uuid.uuid4())), b"{}")
    await jetstream.publish(f"{stream.prefix}.knowledge.update.dead", b"{}")
    await job_publisher(connection, jobs_settings).ensure_stream()
    info = await jetstream.stream_info(stream.name)
    assert info.config.subjects == stream_subjects(stream.prefix)
    assert [published.subject for published in await stream.published()] == [
        job,
        f"{stream.prefix}.knowledge.update.dead",
    ]
    await job_publisher(connection, jobs_settings).ensure_stream()  # a second start: as it is
    assert (await jetstream.stream_info(stream.name)).state.messages == 2
