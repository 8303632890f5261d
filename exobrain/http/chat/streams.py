"""Reading a chat stream, for SSE and for ``stream.resume``: from memory or from the log.

Where the user's session runs here and still holds the stream, its actor
pushes the events into the reader's inbox (the fast path, in order with live
ones). Anywhere else, or once the session let the stream go, the reader
replays the stream's subject of the chat log and follows it live
(:mod:`exobrain.cluster`). Both give the same events with the same numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from typing import Any, Protocol

import nats.errors
import pykka
from aiohttp import web

from exobrain.actors.session import (
    Item,
    RunningSession,
    StreamNotFound,
    Subscribe,
    Subscribed,
    Subscription,
    Unsubscribe,
)
from exobrain.cluster import LogReader, finished
from exobrain.http.cluster import CLUSTER
from exobrain.supervision import ActorUnavailable, ask, tell

from .sessions import ASK_TIMEOUT, LOG_PATIENCE, find_session, logged, not_found, unavailable


class StreamReader(Protocol):
    """A stream as one reader follows it, from this instance's memory or from the log."""

    async def next(self, timeout: float) -> Sequence[Item]: ...

    async def close(self) -> None: ...


class _LocalReader:
    """The fast path: the owner's session pushes the stream's events into an inbox."""

    def __init__(self, session: pykka.ActorRef[Any], stream_id: uuid.UUID, sink: Subscription):
        self._session, self._stream_id, self._sink = session, stream_id, sink

    async def next(self, timeout: float) -> Sequence[Item]:
        return await self._sink.next(timeout)

    async def close(self) -> None:
        with contextlib.suppress(ActorUnavailable):
            tell(self._session, Unsubscribe(self._stream_id, self._sink))


class _Ended:
    async def next(self, timeout: float) -> Sequence[Item]:
        return ()

    async def close(self) -> None:
        return None


async def open_stream(
    app: web.Application, user_id: uuid.UUID, stream_id: uuid.UUID, after_seq: int
) -> tuple[StreamReader, bool]:
    """Follow the user's stream after ``after_seq``; True when nothing more will come."""
    sink = Subscription(asyncio.get_running_loop())
    with contextlib.suppress(StreamNotFound):
        subscribed = await _subscribe_locally(app, user_id, Subscribe(stream_id, after_seq, sink))
        if subscribed is not None:
            return _LocalReader(subscribed[0], stream_id, sink), _over(subscribed[1], after_seq)
    last = await logged(app, user_id, stream_id, patience=LOG_PATIENCE)
    if last is None:
        raise not_found()
    if finished(last.entries) and last.last_seq <= after_seq:
        return _Ended(), True
    return await _log_reader(app, user_id, stream_id, after_seq), False


async def resume(
    app: web.Application, user_id: uuid.UUID, stream_id: uuid.UUID, after_seq: int,
    sink: Subscription,
) -> tuple[Subscribed, LogReader | None]:  # fmt: skip
    """Push the stream after ``after_seq`` into a socket's inbox, then its live events.

    From the log, the returned reader must be relayed into ``sink`` (:func:`relay`).
    """
    with contextlib.suppress(StreamNotFound):
        subscribed = await _subscribe_locally(app, user_id, Subscribe(stream_id, after_seq, sink))
        if subscribed is not None:
            return subscribed[1], None
    last = await logged(app, user_id, stream_id, patience=LOG_PATIENCE)
    if last is None:
        raise not_found()
    done = finished(last.entries)
    status = Subscribed(last.last_seq, done)
    if done and status.last_seq <= after_seq:
        return status, None
    return status, await _log_reader(app, user_id, stream_id, after_seq)


async def relay(reader: LogReader, sink: Subscription) -> None:
    """Push what ``reader`` gets from the log into ``sink`` until the stream ends."""
    try:
        while not reader.finished:
            if entries := await reader.next(60.0):
                sink.push(entries)
    finally:
        await reader.close()


async def _subscribe_locally(
    app: web.Application, user_id: uuid.UUID, subscribe: Subscribe
) -> tuple[pykka.ActorRef[Any], Subscribed] | None:
    """Subscribe in this instance's session of the user, if the user is owned here."""
    if app[CLUSTER].ownership.epoch(user_id) is None:
        return None
    session = await find_session(app, RunningSession(user_id))
    if session is None:
        return None
    try:
        subscribed: Subscribed = await ask(session, subscribe, timeout=ASK_TIMEOUT)
    except ActorUnavailable:
        return None
    return session, subscribed


def _over(subscribed: Subscribed, after_seq: int) -> bool:
    return subscribed.finished and subscribed.last_seq <= after_seq


async def _log_reader(
    app: web.Application, user_id: uuid.UUID, stream_id: uuid.UUID, after_seq: int
) -> LogReader:
    try:
        return await app[CLUSTER].log.reader(user_id, stream_id, after_seq)
    except (nats.errors.Error, TimeoutError):
        raise unavailable() from None
