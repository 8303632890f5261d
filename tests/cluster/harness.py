"""A cluster of real ``exobrain serve`` processes on the test session's servers.

A :class:`Cluster` is one deployment: a database, a Redis key prefix and
JetStream names of its own, mock replies written by the test, and any number of
instances, each ``python -m exobrain serve`` in a directory of its own (no
``.env`` is read there), listening on a port it picked and logging to a file.
Clients reach the instances only over real HTTP, SSE and WebSocket connections,
as a browser behind a load balancer would.

Every wait is a poll with a deadline, and a wait that times out says what it
waited for and what it saw last. Whatever a cluster started is stopped by
:meth:`Cluster.close`, which the fixtures call even when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import asyncpg
import nats
import orjson
from nats.js.errors import NotFoundError

from exobrain.auth import hash_password
from exobrain.config import Settings
from exobrain.store import migrate
from exobrain.store.users import ensure_password_user

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVING = re.compile(r"exobrain is serving at (http://\S+)")
#: How the mock messages file separates replies.
REPLY_SEPARATOR = "\n\n--- message ---\n\n"
PASSWORD = "correct horse battery"
#: Statuses a sender may retry with the same ``client_message_id``.
RETRYABLE = frozenset({429, 503})
POLL_SECONDS = 0.02

Setting = str | int | float | bool | Path


class InstanceFailed(AssertionError):
    """An instance exited, or never became ready; the message carries its log's tail."""


def _short(value: object, limit: int = 600) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit // 2]} ... {text[-limit // 2 :]}"


async def until(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what}; last saw {_short(value)}"
            )
        await asyncio.sleep(POLL_SECONDS)


async def eventually(
    check: Callable[[], Awaitable[T | None]], timeout: float, what: str, *, interval: float = 0.1
) -> T:
    """:func:`until` for a coroutine check (an HTTP request, a query)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what}; last saw {_short(value)}"
            )
        await asyncio.sleep(interval)


@functools.cache
def serve_command() -> tuple[str, ...]:
    """``python -m exobrain serve``, as one process: ``--workers 1`` where the command has
    the option (its default is a worker per core, each a cluster member of its own)."""
    command = (sys.executable, "-m", "exobrain", "serve")
    usage = subprocess.run(
        [*command, "--help"], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    ).stdout
    return (*command, "--workers", "1") if "--workers" in usage else command


def _env_value(value: Setting) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel SIGKILL the child when the test process dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # resolved before fork

    def arm() -> None:
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG

    return arm


@dataclass(frozen=True, slots=True)
class User:
    user_id: uuid.UUID
    email: str
    access_token: str

    @property
    def id(self) -> str:
        return str(self.user_id)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A message an instance acknowledged: ``POST /api/chat/message`` answered 200."""

    stream_id: str
    client_message_id: uuid.UUID
    message: str
    instance: Instance
    refusals: tuple[str, ...]  # the retried attempts before it, if any


@dataclass(frozen=True, slots=True)
class SseEvent:
    seq: int
    event: str
    data: dict[str, Any]
    at: float  # time.monotonic() at arrival


class SseReader:
    """``GET /api/chat/stream/{id}`` read as it arrives, in a task of its own."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, headers: dict[str, str], name: str
    ) -> None:
        self.name = name
        self.events: list[SseEvent] = []
        self.status: int | None = None
        self.refusal = ""  # the body of a non-200 answer
        self.failure: BaseException | None = None  # a broken connection
        self.ended = False
        self._task = asyncio.create_task(self._read(session, url, headers))

    async def _read(
        self, session: aiohttp.ClientSession, url: str, headers: dict[str, str]
    ) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=None)
        try:
            async with session.get(url, headers=headers, timeout=timeout) as response:
                self.status = response.status
                if response.status != 200:
                    self.refusal = await response.text()
                    return
                fields: dict[str, str] = {}
                data: list[str] = []
                async for raw in response.content:
                    line = raw.decode().rstrip("\r\n")
                    if line.startswith(":"):
                        continue
                    if line:
                        name, _, value = line.partition(":")
                        value = value.removeprefix(" ")
                        if name == "data":
                            data.append(value)
                        else:
                            fields[name] = value
                        continue
                    if data:
                        event = fields.get("event", "message")
                        parsed = orjson.loads("\n".join(data))
                        self.events.append(
                            SseEvent(int(fields["id"]), event, parsed, time.monotonic())
                        )
                        if event == "done":
                            return
                    fields, data = {}, []
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            self.failure = exc
        finally:
            self.ended = True

    @property
    def done(self) -> SseEvent | None:
        return self.events[-1] if self.events and self.events[-1].event == "done" else None

    @property
    def text(self) -> str:
        return "".join(e.data["text"] for e in self.events if e.event == "message_chunk")

    def _describe(self) -> str:
        return (
            f"{self.name}: status {self.status} {self.refusal!r}, failure {self.failure!r}, "
            f"{len(self.events)} events, last {_short(self.events[-3:])}"
        )

    async def wait(
        self, check: Callable[[list[SseEvent]], bool], timeout: float, what: str
    ) -> None:
        """Until ``check(events)`` holds; fails at once if the stream ends without it."""

        def holds() -> bool:
            if check(self.events):
                return True
            if self.ended:
                raise AssertionError(f"{self._describe()} ended before {what}")
            return False

        await until(holds, timeout, f"{what} ({self.name})")

    async def wait_end(self, timeout: float) -> None:
        """Until the response ended: ``done``, a refusal, or a broken connection."""
        await until(lambda: self.ended, timeout, f"the end of {self._describe()}")

    async def finish(self, timeout: float = 20.0) -> list[SseEvent]:
        """The whole stream, which must end with ``done``."""
        await self.wait_end(timeout)
        assert self.status == 200, self._describe()
        assert self.done is not None, f"ended without done: {self._describe()}"
        return self.events

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def __repr__(self) -> str:
        return f"<{self._describe()}>"


@dataclass(frozen=True, slots=True)
class Frame:
    data: dict[str, Any]
    at: float  # time.monotonic() at arrival


class Socket:
    """``/api/chat/ws`` with every frame the server sends recorded by a reader task."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, name: str) -> None:
        self.ws = ws
        self.name = name
        self.frames: list[Frame] = []
        self.closed = False
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if message.type is aiohttp.WSMsgType.TEXT:
                    self.frames.append(Frame(orjson.loads(message.data), time.monotonic()))
        except (aiohttp.ClientError, OSError):
            pass
        finally:
            self.closed = True

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f.data for f in self.frames if f.data["type"] == kind]

    def events(self, stream_id: str) -> list[dict[str, Any]]:
        """The ``event`` frames of one stream, in arrival order."""
        return [
            f.data
            for f in self.frames
            if f.data["type"] == "event" and f.data["stream_id"] == stream_id
        ]

    def done(self, stream_id: str) -> dict[str, Any] | None:
        events = self.events(stream_id)
        return events[-1] if events and events[-1]["event"] == "done" else None

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_json(frame)

    async def ping(self, timeout: float = 5.0) -> None:
        """A ``ping`` answered by a ``pong``: the server has taken the socket in."""
        pongs = len(self.of_type("pong"))
        await self.send({"type": "ping"})
        await until(lambda: len(self.of_type("pong")) > pongs, timeout, f"pong on {self.name}")

    async def frame(
        self, check: Callable[[dict[str, Any]], bool], timeout: float, what: str
    ) -> dict[str, Any]:
        """The first frame received (so far or later) for which ``check`` holds."""

        def found() -> dict[str, Any] | None:
            for f in self.frames:
                if check(f.data):
                    return f.data
            if self.closed:
                raise AssertionError(
                    f"{self.name} closed ({self.close_code}) before {what}; "
                    f"frames {_short([f.data for f in self.frames[-5:]])}"
                )
            return None

        return await until(found, timeout, f"{what} on {self.name}")

    async def finish(self, stream_id: str, timeout: float = 20.0) -> list[dict[str, Any]]:
        """The stream's ``event`` frames up to its ``done``."""
        await self.frame(
            lambda f: f["type"] == "event" and f["stream_id"] == stream_id and f["event"] == "done",
            timeout,
            f"done of {stream_id}",
        )
        return self.events(stream_id)

    async def wait_closed(self, timeout: float) -> int | None:
        await until(lambda: self.closed, timeout, f"{self.name} to be closed")
        return self.close_code

    async def close(self) -> None:
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            await asyncio.wait_for(self.ws.close(), 5)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@dataclass(eq=False)
class Instance:
    """One ``python -m exobrain serve`` process."""

    name: str
    directory: Path
    process: subprocess.Popen[bytes]
    session: aiohttp.ClientSession
    opened: list[SseReader | Socket]
    url: str = ""
    stopping: bool = False
    exit_code: int | None = field(default=None)

    @property
    def log_path(self) -> Path:
        return self.directory / "instance.log"

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def serving(self) -> bool:
        """Running, ready once, and not being stopped: where a load balancer would send."""
        return bool(self.url) and not self.stopping and self.running

    def log_tail(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def _alive(self) -> None:
        if not self.running:
            raise InstanceFailed(
                f"{self.name} (pid {self.pid}) exited with {self.process.returncode}:\n"
                f"{self.log_tail()}"
            )

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Until it printed its address and ``/readyz`` answers 200."""

        def address() -> str | None:
            self._alive()
            match = SERVING.search(self.log_path.read_text(errors="replace"))
            return match.group(1) if match else None

        try:
            url = await until(address, timeout, f"{self.name} to print its address")

            async def ready() -> bool:
                self._alive()
                try:
                    async with self.session.get(
                        f"{url}/readyz", timeout=aiohttp.ClientTimeout(total=3)
                    ) as response:
                        return response.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    return False

            await eventually(ready, timeout, f"{self.name} /readyz to answer 200")
        except InstanceFailed:
            raise
        except AssertionError as exc:
            raise InstanceFailed(f"{exc}\n{self.name} log:\n{self.log_tail()}") from None
        self.url = url

    async def wait_exit(self, timeout: float) -> int:
        await until(lambda: not self.running, timeout, f"{self.name} (pid {self.pid}) to exit")
        self.exit_code = self.process.returncode
        return self.process.returncode

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM; its exit code once it exited."""
        self.stopping = True
        if self.running:
            self.process.send_signal(signal.SIGTERM)
        return await self.wait_exit(timeout)

    async def kill(self) -> int:
        """SIGKILL: the process ends without a word; its exit code (-9)."""
        self.stopping = True
        if self.running:
            self.process.kill()
        return await self.wait_exit(10)

    # -- clients ---------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        user: User | None = None,
        *,
        json: Any = None,
        timeout: float = 15.0,
    ) -> Reply:
        headers = user.headers if user else {}
        async with self.session.request(
            method,
            f"{self.url}{path}",
            json=json,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            raw = await response.read()
            body: Any = (
                orjson.loads(raw)
                if raw and response.content_type == "application/json"
                else raw.decode(errors="replace")
            )
            return Reply(response.status, body, dict(response.headers))

    async def post_message(self, user: User, message: str, client_message_id: uuid.UUID) -> Reply:
        return await self.request(
            "POST",
            "/api/chat/message",
            user,
            json={"message": message, "client_message_id": str(client_message_id)},
        )

    def sse(self, user: User, stream_id: str, last_event_id: int | None = None) -> SseReader:
        """Start reading a stream here (``Last-Event-ID`` when given)."""
        headers = dict(user.headers)
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        reader = SseReader(
            self.session,
            f"{self.url}/api/chat/stream/{stream_id}",
            headers,
            f"SSE of {stream_id} on {self.name}",
        )
        self.opened.append(reader)
        return reader

    async def socket(self, user: User) -> Socket:
        ws = await self.session.ws_connect(
            f"{self.url.replace('http://', 'ws://', 1)}/api/chat/ws",
            headers=user.headers,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5),
        )
        opened = Socket(ws, f"socket on {self.name}")
        self.opened.append(opened)
        return opened

    async def ops_instance(self) -> dict[str, Any]:
        """The ``instance`` section of ``/api/ops/actors``."""
        reply = await self.request("GET", "/api/ops/actors")
        assert reply.status == 200, reply
        assert "instance" in reply.body, f"/api/ops/actors of {self.name} has no 'instance'"
        section: dict[str, Any] = reply.body["instance"]
        assert section["pid"] == self.pid, f"{self.name} is pid {self.pid}, not {section}"
        return section

    async def owned_sessions(self) -> list[str]:
        owned: list[str] = (await self.ops_instance())["owned_sessions"]
        return owned

    async def journal(self, user: User) -> list[dict[str, Any]]:
        """Every message of the user, over the journal API: by reference, then sequence."""
        entries = await self.request("GET", "/api/journal?limit=100", user)
        assert entries.status == 200, entries
        messages: list[dict[str, Any]] = []
        for reference in sorted(entry["reference"] for entry in entries.body):
            page: list[dict[str, Any]] = []
            cursor: str | None = None
            while True:
                query = f"limit=500&cursor={cursor}" if cursor else "limit=500"
                reply = await self.request(
                    "GET", f"/api/journal/{reference}/messages?{query}", user
                )
                assert reply.status == 200, reply
                page.extend(reply.body)
                cursor = reply.headers.get("X-Next-Cursor")
                if not cursor:
                    break
            messages.extend(sorted(page, key=lambda message: message["sequence"]))
        return messages

    def __repr__(self) -> str:
        state = "serving" if self.serving else f"exit {self.process.poll()}"
        return f"<{self.name} pid {self.pid} {self.url or 'starting'} {state}>"


class Cluster:
    """One deployment's configuration and every instance started for it."""

    def __init__(
        self,
        root: Path,
        *,
        session: aiohttp.ClientSession,
        database_url: str,
        redis_url: str,
        nats_url: str,
        namespace: str,
        replies: Sequence[str],
        settings: dict[str, Setting],
        processes: list[subprocess.Popen[bytes]],
    ) -> None:
        token = secrets.token_hex(3)
        self.root = root
        self.session = session
        self.database_url = database_url
        self.nats_url = nats_url
        self.token = f"{namespace}{token}"
        self.replies = tuple(replies)
        self.instances: list[Instance] = []
        self.opened: list[SseReader | Socket] = []
        self._processes = processes  # the fixture's last-resort reaper kills what is left
        root.mkdir(parents=True, exist_ok=True)
        replies_file = root / "replies.md"
        replies_file.write_text(REPLY_SEPARATOR.join(self.replies) + "\n")
        values: dict[str, Setting] = {
            "app_env": "local",
            "log_level": "INFO",
            "access_log": False,
            "http_host": "127.0.0.1",
            "http_port": 0,
            "assistant_db_dsn": database_url,
            "assistant_db_pool_max_size": 5,
            "assistant_cache_redis_url": redis_url,
            "redis_key_prefix": f"test:{namespace}:{token}:",
            "exobrain_nats_url": nats_url,
            "startup_dependency_timeout_seconds": 20,
            "main_agent_use_mock": True,
            "main_agent_mock_messages_file": replies_file,
            "job_orchestrator_in_process": True,
            "job_stream_name": f"JOBS_{self.token}",
            "job_subject_prefix": f"t{self.token}.jobs",
            "chat_log_stream_name": f"CHAT_{self.token}",
            "chat_subject_prefix": f"chat{self.token}",
            "chat_lease_ttl_seconds": 2,
            "chat_rate_limit_per_minute": 10_000,
            "chat_max_pending_turns": 50,
        }
        values.update(settings)
        self.settings = values
        known = {name.upper() for name in Settings.model_fields}
        self.env = {name: value for name, value in os.environ.items() if name.upper() not in known}
        self.env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        self.env["PYTHONUNBUFFERED"] = "1"
        self.env.update({name.upper(): _env_value(value) for name, value in values.items()})

    @property
    def lease_ttl(self) -> float:
        return float(str(self.settings["chat_lease_ttl_seconds"]))

    async def prepare(self) -> None:
        """Apply the migrations, so users can be created before any instance starts."""
        await migrate(self.database_url)
        await asyncio.to_thread(serve_command)  # cached: launching need not block the loop

    def launch(self, **settings: Setting) -> Instance:
        """Start one more instance (settings override the cluster's for it alone)."""
        name = f"i{len(self.instances) + 1}"
        directory = self.root / name
        directory.mkdir()
        env = {
            **self.env,
            "EXOBRAIN_STATE_DIR": str(directory / "state"),
            **{key.upper(): _env_value(value) for key, value in settings.items()},
        }
        with (directory / "instance.log").open("wb") as log:
            process = subprocess.Popen(
                serve_command(),
                cwd=directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_parent_death_signal(),  # noqa: PLW1509 - only prctl, set up before fork
            )
        self._processes.append(process)
        instance = Instance(name, directory, process, self.session, self.opened)
        self.instances.append(instance)
        return instance

    async def start(self, count: int = 1, **settings: Setting) -> list[Instance]:
        """Start ``count`` instances together; return once every one is ready."""
        started = [self.launch(**settings) for _ in range(count)]
        await asyncio.gather(*(instance.wait_ready() for instance in started))
        return started

    def serving(self) -> list[Instance]:
        return [instance for instance in self.instances if instance.serving]

    async def user(self, name: str = "Ada Lovelace") -> User:
        """A new user with a password, logged in for tokens through a serving instance."""
        email = f"cluster.{secrets.token_hex(5)}@example.test"
        password_hash = await asyncio.to_thread(hash_password, PASSWORD)
        connection = await asyncpg.connect(self.database_url)
        try:
            async with connection.transaction():
                user_id = await ensure_password_user(connection, email, name, password_hash)
        finally:
            await connection.close()
        [via, *_] = self.serving()
        reply = await via.request(
            "POST",
            "/api/auth/login",
            json={
                "email": email,
                "password": PASSWORD,
                "session_mode": "api",
                "issuance_policy": "tokens",
            },
        )
        assert reply.status == 200, reply
        return User(user_id, email, reply.body["access_token"])

    async def send(
        self,
        user: User,
        message: str,
        via: Instance | Callable[[], Instance],
        *,
        client_message_id: uuid.UUID | None = None,
        timeout: float = 20.0,
    ) -> Accepted:
        """Send until an instance acknowledges it; 429, 503 and broken connections are
        retried with the same ``client_message_id`` (on ``via()`` again when a chooser)."""
        cid = client_message_id or uuid.uuid4()
        deadline = time.monotonic() + timeout
        refusals: list[str] = []
        while True:
            instance = via if isinstance(via, Instance) else via()
            try:
                reply = await instance.post_message(user, message, cid)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                refusals.append(f"{instance.name}: {exc!r}")
            else:
                if reply.status == 200:
                    return Accepted(
                        reply.body["stream_id"], cid, message, instance, tuple(refusals)
                    )
                assert reply.status in RETRYABLE, f"{instance.name} refused {message!r}: {reply}"
                refusals.append(f"{instance.name}: {reply.status} {reply.body}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{message!r} not accepted in {timeout:g}s: {refusals[-5:]}")
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        """Close the clients, stop every instance still running (SIGKILL after 10 s),
        and delete the JetStream streams the cluster created."""
        for opened in reversed(self.opened):
            await opened.close()
        running = [instance for instance in self.instances if instance.running]
        for instance in running:
            instance.stopping = True
            instance.process.send_signal(signal.SIGTERM)
        for instance in running:
            try:
                await instance.wait_exit(10)
            except AssertionError:
                await instance.kill()
        await self._delete_streams()

    async def _delete_streams(self) -> None:
        client = await nats.connect(self.nats_url)
        try:
            jetstream = client.jetstream()
            for info in await jetstream.streams_info():
                name = info.config.name
                if name and self.token in name:
                    with contextlib.suppress(NotFoundError):
                        await jetstream.delete_stream(name)
        finally:
            await client.close()


# -- observables --------------------------------------------------------------------------


def sse_answer(events: list[SseEvent]) -> str:
    """A complete SSE stream: ids rising without repeats, chunks, one ``done`` last."""
    ids = [event.seq for event in events]
    assert ids == sorted(set(ids)), f"ids not strictly rising: {ids}"
    names = [event.event for event in events]
    assert names.count("done") == 1, names
    assert names[-1] == "done", names
    return "".join(event.data["text"] for event in events if event.event == "message_chunk")


def socket_answer(events: list[dict[str, Any]]) -> str:
    """A complete stream on a socket: seq 1, 2, ... without gaps or repeats (a merged
    chunk covers ``first_seq``..``seq``), one ``done`` last; the answer text."""
    expected = 1
    for event in events:
        assert event.get("first_seq", event["seq"]) == expected, _short(events)
        expected = event["seq"] + 1
    names = [event["event"] for event in events]
    assert names.count("done") == 1, names
    assert names[-1] == "done", names
    return "".join(event["data"]["text"] for event in events if event["event"] == "message_chunk")


def answers_by_stream(messages: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The journal's assistant messages by ``metadata.stream_id``."""
    found: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        if message["role"] == "assistant":
            found.setdefault(message["metadata"].get("stream_id"), []).append(message)
    return found


def long_reply(words: int, tag: str = "w") -> str:
    """A reply of ``words`` distinct words, so any prefix of it is recognisable."""
    return " ".join(f"{tag}{n}" for n in range(words))
