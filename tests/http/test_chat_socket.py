"""The chat WebSocket over real connections, with real PostgreSQL, Redis and actors."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import get_port_socket
from auth_support import Client, auth_settings, create_account, login_tokens, start
from test_chat import eventually_stored, send, signed_in, stored
from test_chat_sessions import session_of, sessions_running

from exobrain.actors.session.messages import TurnEvents
from exobrain.agent.mock import load_messages
from exobrain.config import Settings
from exobrain.http import create_app
from exobrain.http.chat.socket import SOCKETS
from exobrain.supervision import tell

sys.path.insert(0, str(Path(__file__).parents[1] / "agent"))
from fake_provider import FakeProvider, Stream, serve, text

AiohttpClient = Callable[..., Any]
WS = "/api/chat/ws"
MOCK_REPLIES = {reply.text for reply in load_messages(None)}


async def connect(client: Client, headers: dict[str, str]) -> aiohttp.ClientWebSocketResponse:
    return await client.ws_connect(WS, headers=headers)


async def frame(ws: aiohttp.ClientWebSocketResponse, timeout: float = 10.0) -> dict[str, Any]:
    message = await ws.receive(timeout=timeout)
    assert message.type is aiohttp.WSMsgType.TEXT, message
    data: dict[str, Any] = message.json()
    return data


async def until_done(
    ws: aiohttp.ClientWebSocketResponse,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Frames up to the first ``done`` event: (the ones before, the done event)."""
    before = []
    while (received := await frame(ws))["type"] != "event" or received["event"] != "done":
        before.append(received)
    return before, received


async def stream_events(
    ws: aiohttp.ClientWebSocketResponse, stream_id: str
) -> list[dict[str, Any]]:
    """``event`` frames of ``stream_id`` up to its ``done``; other frames must not interleave."""
    events: list[dict[str, Any]] = []
    while not events or events[-1]["event"] != "done":
        received = await frame(ws)
        assert received["type"] == "event", received
        assert received["stream_id"] == stream_id
        events.append(received)
    return events


async def close_code(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """The code of the server's next frame, which must be a close."""
    closing = await ws.receive(timeout=5)
    assert closing.type is aiohttp.WSMsgType.CLOSE, closing
    return ws.close_code


def check_complete(events: list[dict[str, Any]]) -> str:
    """Sequence numbers without gaps (merged chunks cover first_seq..seq); the answer text."""
    expected = 1
    for event in events:
        assert event.get("first_seq", event["seq"]) == expected, events
        expected = event["seq"] + 1
    assert [e["event"] for e in events].count("done") == 1
    return "".join(e["data"]["text"] for e in events if e["event"] == "message_chunk")


async def same_answer_on(
    sockets: tuple[aiohttp.ClientWebSocketResponse, ...], stream_id: str
) -> str:
    """The stream read to its ``done`` on each socket: one complete answer, the same on all."""
    answers = {check_complete(await stream_events(ws, stream_id)) for ws in sockets}
    assert len(answers) == 1, answers
    return answers.pop()


def chat_send(message: str, client_message_id: uuid.UUID | None = None) -> dict[str, Any]:
    cid = str(client_message_id or uuid.uuid4())
    return {"type": "chat.send", "client_message_id": cid, "message": message}


async def send_turn(
    ws: aiohttp.ClientWebSocketResponse, message: str, client_message_id: uuid.UUID | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Send a message: (its chat.accepted, its stream.started), which come in either order."""
    await ws.send_json(chat_send(message, client_message_id))
    answers = {received["type"]: received for received in [await frame(ws), await frame(ws)]}
    assert set(answers) == {"chat.accepted", "stream.started"}, answers
    return answers["chat.accepted"], answers["stream.started"]


async def unread_socket(client: Client, headers: dict[str, str]) -> socket.socket:
    """A WebSocket whose peer reads nothing: a tiny receive buffer, never drained."""
    loop = asyncio.get_running_loop()
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.setblocking(False)
    await loop.sock_connect(raw, (client.host, client.port))
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {WS} HTTP/1.1",
        f"Host: {client.host}:{client.port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    await loop.sock_sendall(raw, ("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += await loop.sock_recv(raw, 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return raw


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One frame as a client sends it: final, masked (RFC 6455 5.3)."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        length = bytes([0x80 | size])
    elif size < 1 << 16:
        length = bytes([0x80 | 126]) + size.to_bytes(2, "big")
    else:
        length = bytes([0x80 | 127]) + size.to_bytes(8, "big")
    masked = bytes(byte ^ mask[at % 4] for at, byte in enumerate(payload))
    return bytes([0x80 | opcode]) + length + mask + masked


async def until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.02)


async def keep_sending(raw: socket.socket, frame: bytes) -> None:
    """Send ``frame`` again and again as fast as the connection takes it, until cut off."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(ConnectionError):
        while True:
            await loop.sock_sendall(raw, frame)
            await asyncio.sleep(0)  # a send the kernel takes at once does not yield


async def read_to_end(raw: socket.socket) -> bytes:
    """What arrives until the server closed or reset the connection."""
    loop = asyncio.get_running_loop()
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := await asyncio.wait_for(loop.sock_recv(raw, 1 << 16), 10):
            data += chunk
    return data


async def close_code_of(raw: socket.socket) -> int:
    """Read the socket to its end; the code of the server's close frame."""
    loop = asyncio.get_running_loop()
    data = b""
    while chunk := await asyncio.wait_for(loop.sock_recv(raw, 1 << 16), 10):
        data += chunk
    raw.close()
    at = 0
    while at < len(data):
        opcode, length = data[at] & 0x0F, data[at + 1] & 0x7F
        at += 2
        if length >= 126:
            size = 2 if length == 126 else 8
            length, at = int.from_bytes(data[at : at + size], "big"), at + size
        if opcode == 0x8:
            return int.from_bytes(data[at : at + 2], "big")
        at += length
    raise AssertionError("the server sent no close frame")


StartMock = Callable[..., Awaitable[Client]]


@pytest.fixture
def start_mock(aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]) -> StartMock:
    """Starts the app with the mock agent and these setting overrides."""

    async def started(**overrides: Any) -> Client:
        return await start(aiohttp_client, make_settings, main_agent_use_mock=True, **overrides)

    return started


@pytest.fixture
async def client(start_mock: StartMock) -> Client:
    return await start_mock()


@pytest.fixture
async def provider() -> AsyncIterator[tuple[FakeProvider, str]]:
    fake = FakeProvider()
    async for url in serve(fake):
        yield fake, url


async def test_every_tab_of_the_user_gets_every_event_and_nobody_else_does(
    client: Client,
) -> None:
    account, headers = await signed_in(client)
    _, stranger_headers = await signed_in(client)
    first, second = await connect(client, headers), await connect(client, headers)
    stranger = await connect(client, stranger_headers)
    assert "websocket_connections 3.0" in await (await client.get("/metrics")).text()
    for sender, other in ((first, second), (second, first)):
        cid = uuid.uuid4()
        accepted, started = await send_turn(sender, "What is on today?", cid)
        assert accepted["client_message_id"] == str(cid)
        assert accepted["journal_reference"].count("/") == 2
        stream_id = accepted["stream_id"]
        assert started == {
            "type": "stream.started",
            "stream_id": stream_id,
            "client_message_id": str(cid),
            "journal_reference": accepted["journal_reference"],
            "message": "What is on today?",
        }
        assert await frame(other) == started  # the other tab shows the question too
        assert await same_answer_on((sender, other), stream_id) in MOCK_REPLIES
    rows = await eventually_stored(client, account, 4)
    assert [row["role"] for row in rows] == ["user", "assistant"] * 2
    await stranger.send_json({"type": "ping"})
    assert await frame(stranger) == {"type": "pong"}  # and nothing of the other user's before it


async def test_sockets_follow_the_new_session_after_a_crash(client: Client) -> None:
    account, headers = await signed_in(client)
    first, second = await connect(client, headers), await connect(client, headers)
    await first.send_json({"type": "ping"})
    assert await frame(first) == {"type": "pong"}
    crashed = await session_of(client.app, account)
    tell(crashed, TurnEvents(uuid.uuid4(), ()))  # an unknown stream: the actor fails
    for _ in range(100):
        current = await session_of(client.app, account)
        if current != crashed:
            break
        await asyncio.sleep(0.05)
    _, started = await send_turn(first, "still there?")  # the successor has both sockets
    assert await frame(second) == started
    await same_answer_on((first, second), started["stream_id"])


async def test_idle_sockets_let_the_session_stop_and_follow_the_next_one(
    start_mock: StartMock,
) -> None:
    client = await start_mock(chat_session_idle_seconds=0.1, chat_stream_retention_seconds=0.1)
    account, headers = await signed_in(client)
    first, second = await connect(client, headers), await connect(client, headers)
    _, started = await send_turn(first, "before the nap")
    assert await frame(second) == started
    for ws in (first, second):
        await stream_events(ws, started["stream_id"])
    for _ in range(100):  # a tick a second: the idle session stops though sockets are open
        if str(account.user_id) not in await sessions_running(client):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the idle session kept running")
    _, started = await send_turn(second, "after the nap")
    assert await frame(first) == started
    await same_answer_on((first, second), started["stream_id"])


async def test_a_retried_send_answers_the_same_stream_and_starts_nothing(client: Client) -> None:
    account, headers = await signed_in(client)
    ws = await connect(client, headers)
    cid = uuid.uuid4()
    accepted, _ = await send_turn(ws, "hello", cid)
    await stream_events(ws, accepted["stream_id"])
    await ws.send_json(chat_send("hello", cid))
    assert await frame(ws) == accepted
    await asyncio.sleep(0.2)  # room for a wrongly started turn to show up
    assert [row["role"] for row in await stored(client, account)] == ["user", "assistant"]


async def test_a_tab_joining_mid_turn_resumes_the_stream_and_can_cancel_it(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    provider: tuple[FakeProvider, str],
) -> None:
    fake, url = provider
    fake.scripts.append(Stream(text("Half ", "way ", "there", " and done").chunks, stall_after=4))
    client = await start(
        aiohttp_client, make_settings, main_agent_use_mock=False, model_provider_base_url=url
    )
    account, headers = await signed_in(client)
    first = await connect(client, headers)
    stream_id = (await send_turn(first, "take your time"))[0]["stream_id"]
    seen: list[dict[str, Any]] = []
    while "".join(e["data"].get("text", "") for e in seen) != "Half way there":
        seen.append(await frame(first))
    late = await connect(client, headers)
    active = await frame(late)
    assert active == {"type": "stream.active", "stream_id": stream_id, "seq": seen[-1]["seq"]}
    await late.send_json({"type": "stream.resume", "stream_id": stream_id, "after_seq": 0})
    resumed = [await frame(late), await frame(late)]  # the answer and the backlog, in any order
    assert {
        "type": "stream.resumed",
        "stream_id": stream_id,
        "seq": 3,
        "finished": False,
    } in resumed
    [backlog] = [f for f in resumed if f["type"] == "event"]
    assert backlog["data"] == {"text": "Half way there"}
    assert (backlog["first_seq"], backlog["seq"]) == (1, 3)

    await late.send_json({"type": "chat.cancel", "stream_id": stream_id})
    _, done = await until_done(first)
    assert done["data"] == {"reason": "cancelled"}
    before, done_late = await until_done(late)
    assert done_late == done
    assert {"type": "chat.cancelled", "stream_id": stream_id, "cancelled": True} in before
    rows = await eventually_stored(client, account, 2)
    assert rows[1]["content"] == "Half way there"
    assert rows[1]["metadata"]["status"] == "cancelled"


async def test_bad_frames_get_error_frames_and_the_socket_stays_open(client: Client) -> None:
    _, headers = await signed_in(client)
    ws = await connect(client, headers)
    unknown = uuid.uuid4()
    cases: list[tuple[str | bytes, str, str | None]] = [
        ("{not json", "malformed_json", None),
        ("[1, 2]", "invalid_frame", None),
        ('{"message": "no type"}', "invalid_frame", "type"),
        ('{"type": "chat.shout"}', "unknown_type", "type"),
        ('{"type": "chat.send", "message": "hi", "client_message_id": "nope"}', "invalid_frame",
         "client_message_id"),
        (f'{{"type": "chat.send", "message": "  ", "client_message_id": "{unknown}"}}',
         "invalid_frame", "message"),
        (f'{{"type": "stream.resume", "stream_id": "{unknown}", "after_seq": -1}}',
         "invalid_frame", "after_seq"),
        (f'{{"type": "stream.resume", "stream_id": "{unknown}", "after_seq": "3"}}',
         "invalid_frame", "after_seq"),
        (f'{{"type": "stream.resume", "stream_id": "{unknown}", "after_seq": true}}',
         "invalid_frame", "after_seq"),
        (f'{{"type": "stream.resume", "stream_id": "{unknown}", "after_seq": 3.0}}',
         "invalid_frame", "after_seq"),
        (f'{{"type": "chat.send", "message": "a\\u0000b", "client_message_id": "{unknown}"}}',
         "invalid_frame", "message"),
        ('{"type": "chat.send", "message": "hi", "client_message_id": "\\u0000"}',
         "invalid_frame", "client_message_id"),
        (f'{{"type": "chat.cancel", "stream_id": "{unknown}"}}', "stream_not_found", None),
        (b"\x00\x01binary", "binary_not_supported", None),
    ]  # fmt: skip
    for sent, code, field in cases:
        if isinstance(sent, bytes):
            await ws.send_bytes(sent)
        else:
            await ws.send_str(sent)
        error = await frame(ws)
        assert (error["type"], error["code"], error.get("field")) == ("error", code, field), sent
        assert error["message"]
    await ws.send_json({"type": "ping"})
    assert await frame(ws) == {"type": "pong"}


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("boom")


@pytest.mark.parametrize(
    "broken",
    ["exobrain.http.chat.sessions.send_message", "exobrain.http.chat.frames.item"],
    ids=["answering a frame", "sending an event"],
)
async def test_an_unexpected_failure_closes_with_1011_and_is_logged(
    client: Client, broken: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Never an HTTP 500 written into the upgraded connection (the client would see 1002)."""
    _, headers = await signed_in(client)
    ws = await connect(client, headers)
    monkeypatch.setattr(broken, _boom)
    await ws.send_json(chat_send("hello"))
    while (message := await ws.receive(timeout=10)).type is aiohttp.WSMsgType.TEXT:
        assert message.json()["type"] == "chat.accepted", message  # the reader may answer first
    assert message.type is aiohttp.WSMsgType.CLOSE, message
    assert ws.close_code == 1011
    [failure] = [r for r in caplog.records if r.name == "exobrain.http.chat.socket"]
    assert failure.levelname == "ERROR"
    assert failure.exc_info is not None
    assert str(failure.exc_info[1]) == "boom"


async def test_websocket_pings_are_answered(client: Client) -> None:
    _, headers = await signed_in(client)
    ws = await client.ws_connect(WS, headers=headers, autoping=False)
    await ws.ping(b"hello")
    pong = await ws.receive(timeout=10)
    assert (pong.type, pong.data) == (aiohttp.WSMsgType.PONG, b"hello")


async def test_a_failing_clean_up_is_logged_and_cuts_the_connection_off(
    client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _, headers = await signed_in(client)
    raw = await unread_socket(client, headers)
    with raw:
        monkeypatch.setattr("exobrain.http.chat.feeds.Feeds.detach", _boom)
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(raw, client_frame((1000).to_bytes(2, "big"), opcode=0x8))
        await until(lambda: not client.app[SOCKETS], "the socket is gone")
        assert "failed while closing" in caplog.text
        assert b"HTTP/" not in await read_to_end(raw)


async def test_an_oversized_frame_closes_the_socket_with_1009(start_mock: StartMock) -> None:
    client = await start_mock(chat_ws_max_frame_bytes=4096)
    _, headers = await signed_in(client)
    ws = await connect(client, headers)
    await ws.send_json(chat_send("x" * 5000))
    assert await close_code(ws) == 1009


async def test_a_flood_of_frames_closes_the_socket_with_1008(start_mock: StartMock) -> None:
    client = await start_mock(
        chat_ws_max_frames_per_second=5,
        chat_ws_frame_burst=10,
    )
    _, headers = await signed_in(client)
    ws = await connect(client, headers)
    for _ in range(30):
        await ws.send_json({"type": "ping"})
    pongs = 0
    while (message := await ws.receive(timeout=5)).type is aiohttp.WSMsgType.TEXT:
        pongs += 1
    assert message.type is aiohttp.WSMsgType.CLOSE
    assert ws.close_code == 1008
    assert 10 <= pongs < 30


async def test_upgrades_need_credentials_and_cookies_need_an_allowed_origin(
    start_mock: StartMock,
) -> None:
    client = await start_mock(
        chat_ws_allowed_origins=frozenset({"https://app.example.test"}),
    )
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(WS)
    assert refused.value.status == 401
    account = await create_account(client)
    login = await client.post(
        "/api/auth/login",
        json=account.credentials(session_mode="web", issuance_policy="session"),
    )
    assert login.status == 200
    for origin in ("https://evil.example.test", None):
        headers = {"Origin": origin} if origin else {}
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(WS, headers=headers)
        assert refused.value.status == 403
    ws = await client.ws_connect(WS, headers={"Origin": "https://app.example.test"})
    await ws.send_json({"type": "ping"})
    assert await frame(ws) == {"type": "pong"}


async def test_same_host_is_the_default_allowed_origin(client: Client) -> None:
    account = await create_account(client)
    await client.post(
        "/api/auth/login",
        json=account.credentials(session_mode="web", issuance_policy="session"),
    )
    own = f"http://{client.host}:{client.port}"
    ws = await client.ws_connect(WS, headers={"Origin": own})
    await ws.send_json({"type": "ping"})
    assert await frame(ws) == {"type": "pong"}
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(WS, headers={"Origin": "http://elsewhere.test"})
    assert refused.value.status == 403


async def test_revoked_credentials_close_the_socket_with_4001(start_mock: StartMock) -> None:
    client = await start_mock(chat_ws_auth_recheck_seconds=0.2)
    account = await create_account(client)
    tokens = await login_tokens(client, account)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    ws = await connect(client, headers)
    await ws.send_json({"type": "ping"})
    assert await frame(ws) == {"type": "pong"}
    logout = await client.post(
        "/api/auth/logout", json={"refresh_token": tokens["refresh_token"]}, headers=headers
    )
    assert logout.status == 204
    assert await close_code(ws) == 4001


async def test_an_expired_token_closes_the_socket_with_4001(start_mock: StartMock) -> None:
    client = await start_mock(chat_ws_auth_recheck_seconds=0.2, auth_access_token_ttl_seconds=1)
    _, headers = await signed_in(client)
    ws = await connect(client, headers)
    await ws.send_json({"type": "ping"})
    assert await frame(ws) == {"type": "pong"}
    assert await close_code(ws) == 4001  # exp is at most two seconds away


async def test_the_oldest_socket_gives_way_beyond_the_per_user_cap(start_mock: StartMock) -> None:
    client = await start_mock(chat_ws_max_connections_per_user=2)
    _, headers = await signed_in(client)
    _, other_headers = await signed_in(client)
    oldest, middle = await connect(client, headers), await connect(client, headers)
    others = [await connect(client, other_headers) for _ in range(2)]
    newest = await connect(client, headers)
    assert await close_code(oldest) == 4009
    for ws in (middle, newest, *others):
        await ws.send_json({"type": "ping"})
        assert await frame(ws) == {"type": "pong"}


async def test_a_slow_reader_is_dropped_and_every_answer_is_still_stored(
    start_mock: StartMock, tmp_path: Path
) -> None:
    long_reply = tmp_path / "long.md"
    long_reply.write_text(" ".join(f"word{n}" for n in range(10_000)) + "\n")  # ~70 KB a turn
    client = await start_mock(
        main_agent_mock_messages_file=long_reply,
        chat_ws_outbox_max_bytes=256 * 1024,
        chat_ws_write_timeout_seconds=600,  # the outbox overflows before a write times out
        chat_max_pending_turns=50,
        chat_rate_limit_per_minute=1000,
    )
    account, headers = await signed_in(client)
    reader = await connect(client, headers)
    slow = await unread_socket(client, headers)
    turns = 40
    for n in range(turns):
        await send(client, headers, f"question {n}")
    done = 0
    while done < turns:  # a reader that keeps up gets every answer meanwhile
        received = await frame(reader)
        done += received["type"] == "event" and received["event"] == "done"
    assert await close_code_of(slow) == 4008
    rows = await eventually_stored(client, account, 2 * turns)
    roles = [row["role"] for row in rows]  # interleaved as the turns kept up with the sends
    assert roles.count("user") == roles.count("assistant") == turns


def small_send_buffers(host: str, port: int, family: socket.AddressFamily) -> socket.socket:
    """The test server's listening socket: the connections it accepts inherit a small kernel
    send buffer (without autotuning, which lets one grow to megabytes on loopback)."""
    listener = get_port_socket(host, port, family)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)
    return listener


@pytest.fixture
def start_cramped(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]
) -> StartMock:
    """Starts the app with the mock agent, these overrides and small kernel send buffers."""

    async def started(**overrides: Any) -> Client:
        settings = auth_settings(make_settings, main_agent_use_mock=True, **overrides)
        client: Client = await aiohttp_client(
            create_app(settings), server_kwargs={"socket_factory": small_send_buffers}
        )
        return client

    return started


JSON_PING, WEBSOCKET_PING = client_frame(b'{"type": "ping"}'), client_frame(b"hi", opcode=0x9)


@pytest.mark.parametrize(
    ("sending", "turn"),
    [(None, True), (JSON_PING, True), (JSON_PING, False), (WEBSOCKET_PING, False)],
    ids=["silent during a turn", "pinging during a turn", "pinging", "sending WebSocket pings"],
)
async def test_a_socket_that_never_reads_is_closed_with_4008_and_cut_off(
    start_cramped: StartMock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    sending: bytes | None,
    turn: bool,
) -> None:
    """Its sends wait on full buffers (the outbox is too large to overflow here); what it
    sends must not keep it alive, nor the answers to it pile up in the server."""
    caplog.set_level(logging.INFO, logger="exobrain.http.chat.socket")
    long_reply = tmp_path / "long.md"
    long_reply.write_text("lorem " * 50_000 + "\n")  # 300 KB, far more than the buffers hold
    client = await start_cramped(
        main_agent_mock_messages_file=long_reply,
        chat_ws_outbox_max_bytes=64 * 1024 * 1024,
        chat_ws_write_timeout_seconds=0.5,
        chat_ws_max_frames_per_second=10_000,
        chat_ws_frame_burst=100_000,
    )
    account, headers = await signed_in(client)
    raw = await unread_socket(client, headers)
    with raw:
        sender = asyncio.create_task(keep_sending(raw, sending) if sending else asyncio.sleep(0))
        if turn:
            assert (await send(client, headers, "tell me everything")).status == 200
        await until(lambda: not client.app[SOCKETS], "the server let go of the socket")
        assert "fell behind: closing it with 4008" in caplog.text
        await read_to_end(raw)  # ends: the server cut the connection off though nothing was read
        await sender
    if turn:
        rows = await eventually_stored(client, account, 2)  # the turn went on and was stored
        assert len(rows[1]["content"]) == len(long_reply.read_text().strip())


async def test_a_backlog_its_peer_never_takes_closes_the_socket_though_nothing_more_is_sent(
    start_cramped: StartMock, caplog: pytest.LogCaptureFixture
) -> None:
    """Pongs left unsent below the high-water mark, then silence: nothing more waits on a
    full buffer, yet the socket does not stay open until the heartbeat gives up on it."""
    caplog.set_level(logging.INFO, logger="exobrain.http.chat.socket")
    client = await start_cramped(
        chat_ws_write_timeout_seconds=0.5,
        chat_ws_heartbeat_seconds=600,
        chat_ws_max_frames_per_second=10_000,
        chat_ws_frame_burst=100_000,
    )
    _, headers = await signed_in(client)
    raw = await unread_socket(client, headers)
    with raw:  # 48 KB of pongs: more than the kernel buffers hold, less than the high mark
        await asyncio.get_running_loop().sock_sendall(raw, WEBSOCKET_PING * 12_000)
        await until(lambda: not client.app[SOCKETS], "the server let go of the socket")
        assert "fell behind: closing it with 4008" in caplog.text
        await read_to_end(raw)


async def test_shutdown_stores_the_running_turn_then_closes_sockets_with_1001(
    aiohttp_client: AiohttpClient,
    make_settings: Callable[..., Settings],
    provider: tuple[FakeProvider, str],
    database_url: str,
) -> None:
    fake, url = provider
    fake.scripts.append(Stream(text("Almost ", "finished ", "answer").chunks, stall_after=3))
    client = await start(
        aiohttp_client, make_settings, main_agent_use_mock=False, model_provider_base_url=url
    )
    account, headers = await signed_in(client)
    ws = await connect(client, headers)
    stream_id = (await send_turn(ws, "finish before you go"))[0]["stream_id"]
    await frame(ws)  # the first chunk: the turn is running
    closing = asyncio.create_task(client.server.close())
    await asyncio.sleep(0.3)
    fake.release.set()
    frames_until_close = []
    while (message := await ws.receive(timeout=20)).type is aiohttp.WSMsgType.TEXT:
        frames_until_close.append(message.json())
    await closing
    assert ws.close_code == 1001
    assert frames_until_close[-1]["event"] == "done", frames_until_close
    assert frames_until_close[-1]["stream_id"] == stream_id
    connection = await asyncpg.connect(database_url)
    try:
        content = await connection.fetchval(
            "SELECT content FROM messages WHERE user_id = $1 AND role = 'assistant'",
            account.user_id,
        )
    finally:
        await connection.close()
    assert content == "Almost finished answer"
