"""``/api/chat``: send a message, follow its answer over SSE, cancel it (DESIGN.md §5).

Also where chat starts: the model and tools every session shares, and the
SessionManager among the actors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import pykka
from aiohttp import hdrs, web
from pydantic import Field, ValidationError
from typing_extensions import TypedDict

from exobrain.actors.session import (
    Agent,
    Item,
    Running,
    SessionActor,
    SessionDirectory,
    SessionEnded,
    SessionLimits,
    SessionManager,
    StreamBudget,
    StreamEvent,
    Subscription,
    Tick,
)
from exobrain.agent.mock import MockModel, MockReplies, load_messages
from exobrain.agent.model import Model
from exobrain.agent.prompt import system_prompt
from exobrain.agent.tools import (
    MockBackend,
    TavilyBackend,
    Tools,
    WebBackend,
    build_tools,
    with_knowledge,
)
from exobrain.auth import Principal
from exobrain.http.actors import ACTOR_CHILDREN, JOURNAL, SESSIONS
from exobrain.http.auth.authentication import authenticated
from exobrain.http.cluster import CLUSTER, cluster_ctx
from exobrain.http.contract import RETRY_AFTER, USER, Reply, operation, throttled
from exobrain.http.errors import JsonError, json_response
from exobrain.http.knowledge.base import PASSAGES
from exobrain.http.resources import PG_POOL, SETTINGS
from exobrain.http.validation import BIGINT, Params, parse_body, parse_headers
from exobrain.supervision import ActorUnavailable, ChildSpec, Supervision, tell

from . import sessions, streams
from .rates import MessageRates
from .sessions import ChatMessage, ChatRefused

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ChatResources:
    model: Model
    tools: Tools
    prompt: str
    #: What every session's streams keep in memory, capped for the process.
    streams: StreamBudget


CHAT = web.AppKey("chat", ChatResources)
routes = web.RouteTableDef()


class Accepted(TypedDict):
    """The message is stored; its answer streams under this id."""

    stream_id: uuid.UUID


class Cancelled(TypedDict):
    """False when the turn had already finished."""

    cancelled: bool


class StreamPath(Params):
    stream_id: uuid.UUID


class StreamHeaders(Params):
    last_event_id: int = Field(
        default=0,
        ge=0,
        le=BIGINT,
        alias="Last-Event-ID",
        description="Resume after the event with this `id` (what `EventSource` sends itself).",
    )


NO_STREAM = Reply("No such stream, or another user's (or the id is not a UUID).")
UNAVAILABLE = Reply(
    "Chat is not available right now (restarting, moving, shutting down); try again.",
    headers={"Retry-After": RETRY_AFTER},
)


async def chat_ctx(app: web.Application) -> AsyncIterator[None]:
    """The model and tools every session shares; a bad mock messages file stops start-up."""
    settings = app[SETTINGS]
    client: openai.AsyncOpenAI | None = None
    model: Model
    if settings.main_agent_use_mock:
        replies = MockReplies(load_messages(settings.main_agent_mock_messages_file))
        model = MockModel(replies, words_per_second=settings.main_agent_mock_words_per_second)
    else:
        import openai  # noqa: PLC0415 - 13 MB or more, for the real model only

        from exobrain.agent.provider import OpenAIModel  # noqa: PLC0415

        client = openai.AsyncOpenAI(
            base_url=str(settings.model_provider_base_url),
            api_key="unused",  # OpenAI-compatible gateways authenticate upstream
            timeout=settings.model_provider_timeout_seconds,
            max_retries=0,
        )
        model = OpenAIModel(client, settings.main_agent_model, settings.main_agent_temperature)
    web_backend: WebBackend | None = None
    if settings.web_tools_use_mock:
        web_backend = MockBackend(settings.web_tools_mock_data_file)
    elif settings.tavily_api_key is not None:
        web_backend = TavilyBackend(
            settings.tavily_api_key.get_secret_value(), timeout=settings.web_tools_timeout_seconds
        )
    else:
        log.warning("web tools are off: set TAVILY_API_KEY or WEB_TOOLS_USE_MOCK=true")
    tools = build_tools(web_backend) if web_backend is not None else {}
    app[sessions.RATES] = MessageRates(settings.chat_rate_limit_per_minute)
    app[CHAT] = ChatResources(
        model,
        tools,
        system_prompt(settings.main_agent_system_prompt),
        StreamBudget(settings.chat_streams_max_bytes),
    )
    yield
    if web_backend is not None:
        await web_backend.close()
    if client is not None:
        await client.close()


def sessions_child(app: web.Application) -> ChildSpec:
    settings, pool, loop = app[SETTINGS], app[PG_POOL], asyncio.get_running_loop()
    limits = SessionLimits(
        max_pending_turns=settings.chat_max_pending_turns,
        context_max_chars=settings.chat_context_max_chars,
        stream_retention=settings.chat_stream_retention_seconds,
        streams_per_user=settings.chat_streams_per_user,
        idle_seconds=settings.chat_session_idle_seconds,
    )

    cluster = app[CLUSTER]

    def start_session(
        supervision: Supervision,
        user_id: uuid.UUID,
        epoch: int,
        inherited: bool,
        attached: frozenset[Subscription],
    ) -> pykka.ActorRef[Any]:
        chat, passages = app[CHAT], app.get(PASSAGES)
        tools = chat.tools if passages is None else with_knowledge(chat.tools, passages, user_id)
        agent = Agent(
            chat.model,
            tools,
            chat.prompt,
            app[JOURNAL],
            max_steps=settings.main_agent_max_steps,
            tool_timeout=settings.web_tools_timeout_seconds,
            write_timeout=settings.journal_write_timeout_seconds,
            save_deadline=settings.chat_answer_save_deadline_seconds,
            log=cluster.log,
        )
        return SessionActor.start(
            supervision,
            user_id=user_id,
            epoch=epoch,
            inherited=inherited,
            agent=agent,
            pool=pool,
            loop=loop,
            limits=limits,
            budget=chat.streams,
            attached=attached,
        )

    directory = app[sessions.DIRECTORY] = SessionDirectory(cluster.ownership.session_changed)

    def changed(user_id: uuid.UUID, running: Running | None) -> None:
        loop.call_soon_threadsafe(directory.update, user_id, running)

    return ChildSpec(
        "sessions",
        lambda supervision: SessionManager.start(
            supervision, start_session=start_session, changed=changed
        ),
    )


async def session_ticker_ctx(app: web.Application) -> AsyncIterator[None]:
    """Once a second: sessions expire old streams and passivate when idle."""

    async def tick() -> None:
        while True:
            await asyncio.sleep(1.0)
            with contextlib.suppress(ActorUnavailable):
                tell(app[SESSIONS].ref, Tick())

    task = asyncio.create_task(tick())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def setup_chat(app: web.Application) -> None:
    """Model, tools and cluster membership start before the actors; the SessionManager is
    one of their children."""
    app.cleanup_ctx.extend([chat_ctx, cluster_ctx])
    app[ACTOR_CHILDREN].append(sessions_child)
    app.on_shutdown.append(sessions.hand_off)  # before the sockets close (setup order)
    app.router.add_routes(routes)


@contextlib.contextmanager
def _as_http() -> Iterator[None]:
    try:
        yield
    except ChatRefused as exc:
        raise JsonError(exc.status, exc.message, headers=exc.headers) from None


@routes.post("/api/chat/message")
@operation(
    body=ChatMessage,
    security=USER,
    outage=True,
    responses={
        200: Reply("Stored; the answer streams under `stream_id`.", Accepted),
        429: throttled("Too many messages wait for an answer, or arrive too fast."),
        503: UNAVAILABLE,
    },
)
@authenticated
async def send_message(request: web.Request, principal: Principal) -> web.Response:
    """Store the message in today's journal, queue its answer; `{stream_id}` to follow it.

    A retry with the same `client_message_id` answers the same `stream_id` and starts
    nothing new. 429 with `Retry-After` when too many messages wait or arrive too fast.
    """
    settings = request.app[SETTINGS]
    body = await parse_body(
        request, ChatMessage, context={"max_chars": settings.chat_max_message_chars}
    )
    with _as_http():
        accepted = await sessions.send_message(request.app, principal.user_id, body)
    return json_response(Accepted(stream_id=accepted.stream_id))


def _stream_id(request: web.Request) -> uuid.UUID:
    """A stream id that is not a UUID names no stream: 404, as for any unknown one."""
    try:
        return StreamPath.model_validate(dict(request.match_info)).stream_id
    except ValidationError:
        raise JsonError(404, "stream not found") from None


@routes.get("/api/chat/stream/{stream_id}")
@operation(
    path=StreamPath,
    headers=StreamHeaders,
    security=USER,
    outage=True,
    responses={
        200: Reply(
            "Server-Sent Events, each `id: <seq>`, `event: <type>`, `data: <json>`: `tool_call"
            " {tool_call_id, title, description}`, `tool_response {tool_call_id, message}`,"
            " `error {tool_call_id|null, message}`, `message_chunk {text}`, and last `done"
            " {reason}` (`completed`, `cancelled` or `error`); `: keep-alive` comments while"
            " quiet.",
            str,
            media_type="text/event-stream",
        ),
        404: NO_STREAM,
        503: UNAVAILABLE,
    },
)
@authenticated
async def follow_stream(request: web.Request, principal: Principal) -> web.StreamResponse:
    """The stream's events as Server-Sent Events: the ones so far, then live until `done`.

    Each event carries `id: <seq>`; `Last-Event-ID` resumes after that event. Only the
    stream's owner may read it.
    """
    stream_id, settings = _stream_id(request), request.app[SETTINGS]
    after = parse_headers(request, StreamHeaders).last_event_id
    with _as_http():
        reader, done = await streams.open_stream(request.app, principal.user_id, stream_id, after)
    response = web.StreamResponse(
        headers={
            hdrs.CONTENT_TYPE: "text/event-stream",
            hdrs.CACHE_CONTROL: "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    try:
        await response.prepare(request)
        while not done:
            events = await reader.next(settings.chat_sse_heartbeat_seconds)
            if events:
                done = await _write(response, events)
            else:
                await response.write(b": keep-alive\n\n")
    except (ConnectionResetError, ConnectionError):
        log.debug("stream %s reader went away", stream_id)
    except SessionEnded:
        log.info("stream %s ended with its session", stream_id)
    finally:
        await reader.close()
    return response


async def _write(response: web.StreamResponse, events: Iterable[Item]) -> bool:
    """Write events as SSE frames in one write; True once ``done`` went out."""
    frames, done = [], False
    for event in events:
        if not isinstance(event, StreamEvent):  # announcements are for attached connections
            continue
        frames.append(
            b"id: %d\nevent: %s\ndata: %s\n\n"
            % (event.seq, event.name.encode(), orjson.dumps(dict(event.data)))
        )
        done = done or event.name == "done"
    if frames:
        await response.write(b"".join(frames))
    return done


@routes.post("/api/chat/stream/{stream_id}/cancel")
@operation(
    path=StreamPath,
    security=USER,
    outage=True,
    responses={
        200: Reply("Whether a turn was stopped.", Cancelled),
        404: NO_STREAM,
        503: UNAVAILABLE,
    },
)
@authenticated
async def cancel_stream(request: web.Request, principal: Principal) -> web.Response:
    """Stop the stream's turn: its partial answer is stored and the stream ends with
    `done {reason: "cancelled"}`. `{cancelled: false}` when it had already finished."""
    stream_id = _stream_id(request)
    with _as_http():
        cancelled = await sessions.cancel(request.app, principal.user_id, stream_id)
    return json_response(Cancelled(cancelled=cancelled))
