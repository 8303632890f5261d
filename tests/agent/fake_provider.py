"""A local OpenAI-compatible chat completions server that plays scripted streams.

The real ``openai`` client talks to it over HTTP; each request takes the next
script. Scripts: a list of chunk deltas (streamed as SSE), an HTTP error, a
stream that stalls, or a stream with a malformed line.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestServer


@dataclass(frozen=True)
class Stream:
    """Chunks (each a ``delta`` dict, or a full chunk with ``choices``/``usage``)."""

    chunks: list[dict[str, Any]]
    stall_after: int | None = None  # stop sending (but keep the connection) after this many
    malformed_after: int | None = None  # send a broken line after this many


@dataclass(frozen=True)
class Failure:
    status: int
    message: str


Script = Stream | Failure


def text(*pieces: str, finish: str = "stop") -> Stream:
    chunks: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    chunks += [{"content": piece} for piece in pieces]
    chunks.append({"finish_reason": finish})
    chunks.append({"usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}})
    return Stream(chunks)


def tool_calls(*calls: tuple[str, str, str], split: int = 3) -> Stream:
    """Tool calls (id, name, JSON arguments), each call's arguments split over ``split`` deltas."""
    chunks: list[dict[str, Any]] = []
    for index, (call_id, name, arguments) in enumerate(calls):
        chunks.append(
            {
                "tool_calls": [
                    {
                        "index": index,
                        "id": call_id,
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }
                ]
            }
        )
        size = max(1, -(-len(arguments) // split))
        for start in range(0, len(arguments), size):
            chunks.append(
                {
                    "tool_calls": [
                        {"index": index, "function": {"arguments": arguments[start : start + size]}}
                    ]
                }
            )
    chunks.append({"finish_reason": "tool_calls"})
    return Stream(chunks)


@dataclass
class FakeProvider:
    scripts: list[Script] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        return app

    async def _complete(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json(loads=orjson.loads))
        script = self.scripts.pop(0)
        if isinstance(script, Failure):
            return web.json_response(
                {"error": {"message": script.message, "type": "fake"}}, status=script.status
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for number, chunk in enumerate(script.chunks):
            if number == script.stall_after:
                await self.release.wait()  # until the test ends
            if number == script.malformed_after:
                await response.write(b"data: {this is not json\n\n")
            await response.write(b"data: " + orjson.dumps(_chunk(chunk)) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        return response


def _chunk(delta: dict[str, Any]) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "agent",
    }
    if "usage" in delta:
        return base | {"choices": [], "usage": delta["usage"]}
    body = {key: value for key, value in delta.items() if key != "finish_reason"}
    return base | {
        "choices": [{"index": 0, "delta": body, "finish_reason": delta.get("finish_reason")}]
    }


async def serve(provider: FakeProvider) -> AsyncIterator[str]:
    """Run ``provider`` on a free local port; yields its base URL."""
    server = TestServer(provider.app())
    await server.start_server()
    try:
        yield str(server.make_url("/v1"))
    finally:
        provider.release.set()
        await server.close()
