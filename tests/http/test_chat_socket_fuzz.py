"""Every client frame type, fuzzed member by member against a real server over a real socket.

Each example is a valid frame with one member dropped or replaced (by a near
miss such as ``"3"`` or ``true`` for an integer, a nasty string, any JSON
value), or with an extra member; or no frame at all (malformed JSON, any JSON
value). Whatever it is, the server answers exactly as its parser says, and when
the document alone says the member cannot be right (missing, another JSON
type, a NUL), that is an ``error`` naming the member. Every frame the server
sends is valid as documented, and the socket stays open: a ``ping`` sent after
each example is answered. A frame over the size limit closes the socket with
1009, as documented, and the next example reconnects.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from auth_support import Client, start
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from test_asyncapi import check, document
from test_chat import signed_in
from test_chat_socket import WS, frame

from exobrain.config import Settings
from exobrain.http.chat import frames

AiohttpClient = Callable[..., Any]
MAX_CHARS, MAX_FRAME_BYTES = 100, 4096
REPLIES = {frames.frame_type(answer) for answer in frames.ANSWERS.values()} | {"error"}
PING = '{"type": "ping"}'
MODELS = {frames.frame_type(model): model for model in frames.CLIENT_FRAMES}
SCHEMAS = document()["components"]["schemas"]
JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}
JSON_TYPES |= {list: "array", dict: "object"}

FUZZING = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

nasty_text = st.one_of(
    st.text(max_size=20),
    st.text(max_size=10).map(lambda text: f"{text}\x00{text}"),
    st.sampled_from(["", " ", "\x00", "3", "\u202e\u0301", "\U0001d518", "\ufeff", "\U0010ffff"]),
    st.integers(min_value=MAX_CHARS - 1, max_value=2 * MAX_FRAME_BYTES).map("x".__mul__),
)
near_misses: st.SearchStrategy[Any] = st.sampled_from(
    [None, True, False, 0, -1, 3.0, 2**64, 2**70, [], {}, "nope"]
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | nasty_text,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def encode(value: Any) -> str:
    """JSON text as a client may send it: raw Unicode, integers of any size."""
    return json.dumps(value, ensure_ascii=False)


@dataclass(frozen=True)
class Case:
    """A frame's text, the member broken to make it (None: nothing, or no frame at all), and
    whether the document alone says the frame cannot be right."""

    text: str
    broken: str | None = None
    undocumented: bool = False


def valid(kind: str, stream_id: str) -> st.SearchStrategy[dict[str, Any]]:
    """Valid ``kind`` frames; streams are mostly ``stream_id`` (an existing one, answered at
    once; an unknown one is looked for in the chat log for a moment)."""
    streams = st.sampled_from([stream_id, stream_id, stream_id, str(uuid.uuid4())])
    members: dict[str, st.SearchStrategy[dict[str, Any]]] = {
        "chat.send": st.fixed_dictionaries(
            {
                "client_message_id": st.uuids().map(str),
                "message": st.text(max_size=MAX_CHARS).filter(
                    lambda text: text.strip() and "\x00" not in text
                ),
            }
        ),
        "chat.cancel": st.fixed_dictionaries({"stream_id": streams}),
        "stream.resume": st.fixed_dictionaries(
            {"stream_id": streams, "after_seq": st.integers(0, 2**40)}
        ),
        "ping": st.just(dict[str, Any]()),
    }
    return members[kind].map(lambda found: {"type": kind, **found})


def undocumented(model: type[BaseModel], member: str, value: Any) -> bool:
    """``value`` has another JSON type than the document gives ``member``, is another
    ``type``, or is a string with a NUL where the document excludes one."""
    schema = SCHEMAS[model.__name__]["properties"][member]
    if JSON_TYPES[type(value)] != schema["type"]:
        return True
    if "const" in schema:
        return bool(value != schema["const"])
    return isinstance(value, str) and "\x00" in value and "\\u0000" in schema.get("pattern", "")


@st.composite
def broken(draw: st.DrawFn, kind: str, member: str | None, stream_id: str) -> Case:
    """A valid ``kind`` frame with ``member`` dropped or replaced (None: one member added)."""
    frame = draw(valid(kind, stream_id))
    if member is None:
        extra = draw(st.text(max_size=8).filter(lambda name: name not in frame))
        frame[extra] = draw(json_values)
        return Case(encode(frame))
    if draw(st.booleans()):
        del frame[member]
        return Case(encode(frame), member, undocumented=True)
    frame[member] = draw(near_misses | nasty_text | json_values)
    return Case(encode(frame), member, undocumented(MODELS[kind], member, frame[member]))


not_frames = st.one_of(
    st.text(max_size=50),
    json_values.map(encode),
    st.sampled_from(['{"type": "ping", "x": "\\ud800"}', "{", '{"type": 1e999}', "\x00"]),
).map(Case)


class Fuzzer:
    """One user's socket, reopened after a documented close, and a stream of that user."""

    def __init__(self, client: Client, headers: dict[str, str], stream_id: str) -> None:
        self.client, self.headers, self.stream_id = client, headers, stream_id
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def socket(self) -> aiohttp.ClientWebSocketResponse:
        if self.ws is None or self.ws.closed:
            self.ws = await self.client.ws_connect(WS, headers=self.headers)
        return self.ws

    async def exchange(self, case: Case) -> None:
        ws = await self.socket()
        await ws.send_str(case.text)
        if len(case.text.encode()) > MAX_FRAME_BYTES:
            while (closing := await ws.receive(timeout=10)).type is aiohttp.WSMsgType.TEXT:
                check(closing.json())  # of a turn under way
            assert (closing.type, ws.close_code) == (aiohttp.WSMsgType.CLOSE, 1009), closing
            return
        await ws.send_str(PING)
        parsed = parse(case.text)
        [reply] = await self.replies(ws, pongs=2 if isinstance(parsed, frames.Ping) else 1)
        if case.undocumented:  # the document alone says so, whatever the parser thinks
            assert (reply["type"], reply.get("field")) == ("error", case.broken), (case, reply)
        if isinstance(parsed, frames.FrameError):
            expected = ("error", parsed.code, parsed.field)
            assert (reply["type"], reply["code"], reply.get("field")) == expected, (case, reply)
            if parsed.code == "invalid_frame" and case.broken is not None:
                assert reply["field"] == case.broken, (case, reply)
        else:  # the answer, or a documented refusal (an unknown stream, the rate limit)
            assert reply["type"] in {frames.frame_type(frames.ANSWERS[type(parsed)]), "error"}

    async def replies(
        self, ws: aiohttp.ClientWebSocketResponse, pongs: int
    ) -> list[dict[str, Any]]:
        """The replies received up to the ``pong`` answering the barrier ping, without it;
        the frames of turns a valid ``chat.send`` started may come between them."""
        replies = []
        while pongs:
            received = await frame(ws)
            check(received)
            pongs -= received["type"] == "pong"
            if received["type"] in REPLIES and pongs:
                replies.append(received)
        return replies


def parse(text: str) -> frames.ClientFrame | frames.FrameError:
    """What the server's parser makes of ``text``: a frame, or the error it answers."""
    try:
        return frames.parse(text, max_chars=MAX_CHARS)
    except frames.FrameError as refused:
        return refused


@pytest.fixture
async def fuzzer(aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]) -> Fuzzer:
    """A socket of a user with one finished turn (whose stream resumes and cancels fast)."""
    client = await start(
        aiohttp_client,
        make_settings,
        main_agent_use_mock=True,
        chat_max_message_chars=MAX_CHARS,
        chat_ws_max_frame_bytes=MAX_FRAME_BYTES,
        chat_ws_max_frames_per_second=10_000,
        chat_ws_frame_burst=100_000,
        chat_rate_limit_per_minute=5,  # a few valid messages start turns, the rest are refused
    )
    _, headers = await signed_in(client)
    ws = await client.ws_connect(WS, headers=headers)
    await ws.send_json(
        {"type": "chat.send", "client_message_id": str(uuid.uuid4()), "message": "hi"}
    )
    while (received := await frame(ws))["type"] != "event" or received["event"] != "done":
        check(received)
    fuzzer = Fuzzer(client, headers, received["stream_id"])
    fuzzer.ws = ws
    return fuzzer


MEMBERS = [
    (kind, member) for kind, model in MODELS.items() for member in [*model.model_fields, None]
]


@pytest.mark.parametrize(
    ("kind", "member"), MEMBERS, ids=[f"{kind} {member or '+extra'}" for kind, member in MEMBERS]
)
@FUZZING
@given(data=st.data())
async def test_every_member_of_every_frame_broken_gets_a_defined_answer(
    fuzzer: Fuzzer, kind: str, member: str | None, data: st.DataObject
) -> None:
    await fuzzer.exchange(data.draw(broken(kind, member, fuzzer.stream_id)))


@FUZZING
@given(case=not_frames)
async def test_anything_that_is_not_a_frame_gets_a_defined_answer(
    fuzzer: Fuzzer, case: Case
) -> None:
    await fuzzer.exchange(case)


async def test_a_text_frame_that_is_not_utf8_closes_with_1007(fuzzer: Fuzzer) -> None:
    ws = await fuzzer.socket()
    await ws.send_frame(b'{"type": "ping", "x": "\xff"}', aiohttp.WSMsgType.TEXT)
    closing = await ws.receive(timeout=10)
    assert (closing.type, ws.close_code) == (aiohttp.WSMsgType.CLOSE, 1007)
