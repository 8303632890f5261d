"""``GET /api/chat/ws``: one WebSocket per tab onto the user's SessionActor.

The protocol is docs/websocket-protocol.md. The upgrade is authenticated
before it happens (Bearer token, or the session cookie from an allowed
``Origin``). Each socket attaches an inbox through the SessionManager, which
hands it to every session of the user, so every event of every turn of that
user reaches every one of that user's sockets, in order, and an idle socket
keeps no session alive. The statuses of the user's jobs join the same inbox
(``job.status``), from one subscription of the process (:class:`JobFeed`). The
inbox is bounded: a socket that falls behind is closed while the turn goes on.
Two tasks serve a socket: the handler reads client frames, a writer sends
events and re-checks the credentials now and then.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import nats.errors
import pykka
import redis.asyncio as redis
from aiohttp import WSMsgType, web

from exobrain.actors.session import (
    AttachTo,
    DetachFrom,
    SessionEnded,
    SubscriberTooSlow,
    Subscription,
)
from exobrain.auth import Principal
from exobrain.http.actors import METRICS, SESSIONS
from exobrain.http.auth.authentication import authenticate, bearer_token
from exobrain.http.cluster import CLUSTER
from exobrain.http.errors import JsonError
from exobrain.http.knowledge.job_feed import JobFeed
from exobrain.http.origins import origin_allowed
from exobrain.http.resources import NATS, SETTINGS
from exobrain.jobs.lifecycle import JobStatus
from exobrain.supervision import ActorUnavailable, tell

from . import frames, streams
from . import sessions as chat
from .backlog import Backlog
from .feeds import Feeds
from .frames import ChatCancel, ChatSend, FrameError, Ping, StreamResume
from .sessions import ChatRefused

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

#: aiohttp's own flow control is off (its writer never waits for the connection to drain):
#: every sender waits on one shared future there, which one cancelled wait (a timeout, or
#: the heartbeat's ping cancelled by a close) cancels for all. ``ChatSocket._room`` waits
#: instead, for frames and for the pongs that answer client pings (autoping is off too).
_NO_WRITER_LIMIT = sys.maxsize

#: How often a socket whose peer does not keep up looks whether its buffer drained.
_DRAIN_POLL = 0.02

#: How many jobs a socket remembers the last sent version of (the least recently changed
#: are forgotten first): enough to keep every job of a user's updates in order.
_JOBS_REMEMBERED = 1024


class Close(enum.IntEnum):
    """The close codes this endpoint sends (documented in docs/websocket-protocol.md)."""

    GOING_AWAY = 1001  # the server is shutting down
    FLOOD = 1008  # more frames than the per-socket rate allows
    INTERNAL_ERROR = 1011  # an unexpected exception (logged); never an HTTP answer in the socket
    TRY_AGAIN = 1013  # chat is restarting; reconnect after a moment
    UNAUTHORIZED = 4001  # the credentials expired or were revoked
    TOO_SLOW = 4008  # the socket fell too far behind its events
    REPLACED = 4009  # the user opened more sockets than allowed; this was the oldest


class Sockets:
    """This process's open sockets, oldest first per user: the cap, and the shutdown list."""

    def __init__(self, per_user: int) -> None:
        self._per_user = per_user
        self._by_user: dict[uuid.UUID, list[ChatSocket]] = {}
        self.closing = False

    def add(self, socket: ChatSocket) -> ChatSocket | None:
        """Register ``socket``; the user's oldest one if that puts the user over the cap."""
        mine = self._by_user.setdefault(socket.user_id, [])
        mine.append(socket)
        return mine.pop(0) if len(mine) > self._per_user else None

    def tell(self, status: JobStatus) -> None:
        """A job's status to the sockets of the job's user here, and to no one else."""
        try:
            user_id = uuid.UUID(status.user_id)
        except ValueError:
            return
        for socket in self._by_user.get(user_id, ()):
            socket.tell(status)

    def remove(self, socket: ChatSocket) -> None:
        mine = self._by_user.get(socket.user_id, [])
        with contextlib.suppress(ValueError):
            mine.remove(socket)
        if not mine:
            self._by_user.pop(socket.user_id, None)

    def __iter__(self) -> Iterator[ChatSocket]:
        return (socket for mine in list(self._by_user.values()) for socket in list(mine))

    def __len__(self) -> int:
        return sum(len(mine) for mine in self._by_user.values())


SOCKETS = web.AppKey("chat_sockets", Sockets)
FEEDS = web.AppKey("chat_feeds", Feeds)


class _FrameBudget:
    """A token bucket: ``rate`` frames per second with bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self._rate, self._burst = rate, float(burst)
        self._tokens, self._at = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class ChatSocket:
    def __init__(self, request: web.Request, ws: web.WebSocketResponse, principal: Principal):
        self.user_id = principal.user_id
        self._request, self._ws, self._app = request, ws, request.app
        settings = self._app[SETTINGS]
        self._max_chars = settings.chat_max_message_chars
        self._recheck = settings.chat_ws_auth_recheck_seconds
        self._outbox_limit = settings.chat_ws_outbox_max_bytes
        self._write_timeout = settings.chat_ws_write_timeout_seconds
        self._backlog = Backlog(self._write_timeout, self._fall_behind)
        self._budget = _FrameBudget(
            settings.chat_ws_max_frames_per_second, settings.chat_ws_frame_burst
        )
        self._sink = Subscription(asyncio.get_running_loop())
        self._relays: set[asyncio.Task[None]] = set()
        #: The version of each job's status last queued here, least recently changed first.
        self._job_versions: dict[str, int] = {}
        self._manager: pykka.ActorRef[Any] | None = None
        self._ending: tuple[Close, str] | None = None
        self._closing: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    def end(self, code: Close, reason: str) -> None:
        """Close after the events already received are sent (shutdown, replacement)."""
        self._ending = (code, reason)
        self._sink.end()

    def tell(self, status: JobStatus) -> None:
        """Queue a job's status, unless as new a one of that job was queued already (the
        workers' statuses may come out of order)."""
        known = self._job_versions.pop(status.job_id, 0)
        self._job_versions[status.job_id] = max(known, status.version)
        if len(self._job_versions) > _JOBS_REMEMBERED:
            del self._job_versions[next(iter(self._job_versions))]
        if status.version > known:
            self._sink.push([status])

    async def serve(self) -> None:
        writer: asyncio.Task[None] | None = None
        try:
            await self._attach()
            writer = asyncio.create_task(self._write())
            await self._read()
        except ChatRefused as exc:
            await self._close(Close.TRY_AGAIN, exc.message)
        except SubscriberTooSlow:
            await self._drop_slow()
        except ConnectionError:
            log.debug("chat socket of %s went away", self.user_id)
        except Exception as exc:
            await self._fail(exc)
        finally:
            self._backlog.stop()
            for task in [*self._relays, *([writer] if writer is not None else [])]:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if self._closing is not None:
                await self._closing
            self._cut_off_if_stuck()
            await self._detach()
            self.closed.set()

    async def _attach(self) -> None:
        """Follow every stream of the user from now on, owned here or elsewhere; those under
        way are announced."""
        await self._detach()
        self._sink = Subscription(asyncio.get_running_loop(), self._outbox_limit)
        if self._ending is not None:  # replaced or shut down before it was attached
            self._sink.end()
        try:
            self._manager = self._app[SESSIONS].ref
            tell(self._manager, AttachTo(self.user_id, self._sink))
        except ActorUnavailable:
            raise ChatRefused(503, "unavailable", "chat is restarting", 1) from None
        owned_here = self._app[CLUSTER].ownership.epoch(self.user_id) is not None
        try:
            await self._app[FEEDS].attach(self.user_id, self._sink, owned_here=owned_here)
        except (nats.errors.Error, TimeoutError):
            raise ChatRefused(503, "unavailable", "chat is not available right now", 1) from None

    async def _detach(self) -> None:
        if self._manager is not None:
            with contextlib.suppress(ActorUnavailable):
                tell(self._manager, DetachFrom(self.user_id, self._sink))
        await self._app[FEEDS].detach(self.user_id, self._sink)

    async def _drop_slow(self) -> None:
        await asyncio.shield(self._fall_behind())

    def _fall_behind(self) -> asyncio.Task[None]:
        """The turns go on and are stored; the client resumes their streams on a new socket."""
        if self._closing is None:
            log.info("chat socket of %s fell behind: closing it with 4008", self.user_id)
        return self._start_closing(Close.TOO_SLOW, "too slow to keep up")

    async def _fail(self, exc: Exception) -> None:
        """An unexpected exception: logged, and a close frame (never an HTTP 500 written into
        the upgraded connection); the client reconnects and resumes."""
        log.error("chat socket of %s failed", self.user_id, exc_info=exc)
        await self._close(Close.INTERNAL_ERROR, "internal error")

    async def _close(self, code: Close, reason: str) -> None:
        await asyncio.shield(self._start_closing(code, reason))

    def _start_closing(self, code: Close, reason: str) -> asyncio.Task[None]:
        """Close once, in a task of its own: cancelling the task that asked (the reader and
        the writer end each other) does not cut the close handshake short."""
        if self._closing is None:
            self._closing = asyncio.create_task(self._close_politely(code, reason))
        return self._closing

    async def _close_politely(self, code: Close, reason: str) -> None:
        """A peer that does not answer the close frame within the write timeout is cut off."""
        try:
            async with asyncio.timeout(self._write_timeout):
                await self._ws.close(code=code, message=reason.encode(), drain=False)
        except TimeoutError:
            if self._request.transport is not None:
                self._request.transport.abort()

    def _cut_off_if_stuck(self) -> None:
        """A connection closes once its last bytes are sent: one whose peer never reads would
        stay open forever (with its buffer), so it is cut off after the write timeout."""
        transport = self._request.transport
        if transport is not None:
            asyncio.get_running_loop().call_later(self._write_timeout, _abort_if_unsent, transport)

    async def _send(self, text: str) -> None:
        await self._send_frame(text.encode(), WSMsgType.TEXT)

    async def _send_frame(self, data: bytes, opcode: WSMsgType) -> None:
        """Every frame of the socket, pongs too: flow-controlled, its backlog watched."""
        transport = await self._room()
        unsent = transport.get_write_buffer_size()
        await self._ws.send_frame(data, opcode)  # never waits: aiohttp's own flow control is off
        self._backlog.wrote(transport, unsent)

    async def _room(self) -> asyncio.Transport:
        """Wait, if more than the connection's high-water mark waits unsent, until it went
        below the low one; a peer that does not take it down within the write timeout is too
        slow, whether or not it keeps sending. (Less than that waits unsent for the peer to
        take some of it within the write timeout: :class:`Backlog`.)"""
        transport = self._request.transport
        if transport is None:
            raise ConnectionResetError("the chat socket's connection is gone")
        low, high = transport.get_write_buffer_limits()
        if transport.get_write_buffer_size() > high:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._write_timeout
            while transport.get_write_buffer_size() > low:
                if loop.time() >= deadline:
                    raise SubscriberTooSlow
                await asyncio.sleep(_DRAIN_POLL)
        return transport

    async def _read(self) -> None:
        async for message in self._ws:
            if not self._budget.take():
                await self._close(Close.FLOOD, "too many frames")
                return
            if message.type is WSMsgType.TEXT:
                await self._answer(message.data)
            elif message.type is WSMsgType.PING:  # answered here, to count and flow-control it
                await self._send_frame(message.data, WSMsgType.PONG)
            elif message.type is WSMsgType.BINARY:
                await self._send(frames.error("binary_not_supported", "frames are JSON text"))

    async def _answer(self, text: str) -> None:
        try:
            frame = frames.parse(text, max_chars=self._max_chars)
        except FrameError as exc:
            await self._send(frames.error(exc.code, exc.message, field=exc.field))
            return
        about: dict[str, Any] = {
            "client_message_id": getattr(frame, "client_message_id", None),
            "stream_id": getattr(frame, "stream_id", None),
        }
        try:
            reply = await self._act(frame)
        except Exception as exc:  # a refusal, or an outage of what the frame needed: say so
            refused = exc if isinstance(exc, ChatRefused) else chat.refusal_for(exc)
            if refused is None:
                raise
            reply = frames.error(
                refused.code, refused.message, retry_after=refused.retry_after, **about
            )
        await self._send(reply)

    async def _act(self, frame: frames.ClientFrame) -> str:
        match frame:
            case Ping():
                return frames.PONG
            case ChatSend():
                if self._app[SOCKETS].closing:
                    raise ChatRefused(503, "shutting_down", "the server is shutting down", 1)
                accepted = await chat.send_message(self._app, self.user_id, frame)
                return frames.accepted(
                    frame.client_message_id, accepted.stream_id, accepted.journal_reference
                )
            case ChatCancel(stream_id=stream_id):
                cancelled = await chat.cancel(self._app, self.user_id, stream_id)
                return frames.cancelled(stream_id, cancelled)
            case StreamResume(stream_id=stream_id, after_seq=after_seq):
                subscribed, reader = await streams.resume(
                    self._app, self.user_id, stream_id, after_seq, self._sink
                )
                if reader is not None:  # owned elsewhere: relayed from the chat log
                    relay = asyncio.create_task(streams.relay(reader, self._sink))
                    self._relays.add(relay)
                    relay.add_done_callback(self._relayed)
                return frames.resumed(stream_id, subscribed)

    def _relayed(self, relay: asyncio.Task[None]) -> None:
        self._relays.discard(relay)
        if not relay.cancelled() and (exc := relay.exception()) is not None:
            log.error("relaying a stream to chat socket of %s failed", self.user_id, exc_info=exc)
            self.end(Close.INTERNAL_ERROR, "internal error")

    async def _write(self) -> None:
        try:
            await self._pump()
        except SubscriberTooSlow:
            await self._drop_slow()
        except ChatRefused as exc:  # the restarting session manager could not be reached
            await self._close(Close.TRY_AGAIN, exc.message)
        except ConnectionError:
            log.debug("chat socket of %s went away while sending", self.user_id)
        except Exception as exc:
            await self._fail(exc)

    async def _pump(self) -> None:
        """Send events as they come; re-check credentials when quiet; close when told to."""
        loop = asyncio.get_running_loop()
        recheck_at = loop.time() + self._recheck
        while True:
            try:
                events = await self._sink.next(max(0.0, recheck_at - loop.time()))
            except SessionEnded:
                if self._ending is None and not self._app[SOCKETS].closing:
                    await self._attach()  # the session manager restarted: attach to its successor
                    continue
                await self._close(*(self._ending or (Close.GOING_AWAY, "server shutting down")))
                return
            for entry in events:
                await self._send(frames.item(entry))
            if loop.time() >= recheck_at:
                if not await self._still_authenticated():
                    await self._close(Close.UNAUTHORIZED, "credentials expired or revoked")
                    return
                recheck_at = loop.time() + self._recheck

    async def _still_authenticated(self) -> bool:
        """A refusal closes the socket; an outage of the auth stores does not."""
        try:
            await authenticate(self._request)
        except JsonError:
            return False
        except (redis.RedisError, asyncpg.PostgresError, OSError) as exc:
            log.warning("credential re-check of a chat socket skipped: %s", exc)
        return True


def _abort_if_unsent(transport: asyncio.Transport) -> None:
    if transport.get_write_buffer_size():
        transport.abort()


def _check_origin(request: web.Request) -> None:
    """Cookies ride along on cross-site upgrades: those must come from an allowed origin."""
    if bearer_token(request) is not None:
        return
    origin = request.headers.get("Origin")
    if not origin_allowed(request, origin, request.app[SETTINGS].chat_ws_allowed_origins):
        raise JsonError(403, "this origin may not open a chat socket with a session cookie")


@routes.get("/api/chat/ws")
async def chat_socket(request: web.Request) -> web.StreamResponse:
    """The realtime chat protocol over a WebSocket: docs/websocket-protocol.md, and as
    AsyncAPI 3, `/asyncapi.json` (beside this document).

    401 before upgrading without credentials; 403 for a cookie from another origin.
    """
    principal = await authenticate(request)
    _check_origin(request)
    settings, sockets = request.app[SETTINGS], request.app[SOCKETS]
    if sockets.closing:
        raise JsonError(503, "the server is shutting down", headers={"Retry-After": "1"})
    ws = web.WebSocketResponse(
        heartbeat=settings.chat_ws_heartbeat_seconds,
        max_msg_size=settings.chat_ws_max_frame_bytes,
        writer_limit=_NO_WRITER_LIMIT,
        autoping=False,
    )
    await ws.prepare(request)
    socket = ChatSocket(request, ws, principal)
    replaced = sockets.add(socket)
    if replaced is not None:
        replaced.end(Close.REPLACED, "replaced by a newer connection")
    gauge = request.app[METRICS].websocket_connections
    gauge.inc()
    try:
        await socket.serve()
    except Exception:  # serve answers failures with 1011; here its own clean-up failed
        log.exception("chat socket of %s failed while closing", socket.user_id)
        if request.transport is not None:
            request.transport.abort()  # never an HTTP answer in the upgraded connection
    finally:
        sockets.remove(socket)
        gauge.dec()
    return ws


async def _close_sockets(app: web.Application) -> None:
    """At shutdown, once the sessions stored their running turns (``sessions.hand_off``):
    every socket gets 1001; clients reconnect to another instance and resume by sequence."""
    sockets = app[SOCKETS]
    sockets.closing = True
    for socket in sockets:
        socket.end(Close.GOING_AWAY, "server shutting down")
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5.0):
            await asyncio.gather(*(socket.closed.wait() for socket in sockets))


async def _feeds_ctx(app: web.Application) -> AsyncIterator[None]:
    app[FEEDS] = Feeds(app[CLUSTER].log)
    yield


async def _job_feed_ctx(app: web.Application) -> AsyncIterator[None]:
    """From start-up to shutdown, whether or not sockets are open: a status costs little."""
    feed = JobFeed(app[NATS], app[SETTINGS].job_subject_prefix, app[SOCKETS].tell)
    await feed.start()
    yield
    await feed.stop()


def setup_chat_socket(app: web.Application) -> None:
    app[SOCKETS] = Sockets(app[SETTINGS].chat_ws_max_connections_per_user)
    app.cleanup_ctx.extend([_feeds_ctx, _job_feed_ctx])
    app.on_shutdown.append(_close_sockets)
    app.router.add_routes(routes)
