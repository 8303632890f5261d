"""Web tools: the real tavily-python client against a local fake Tavily, and the mock web."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from exobrain.agent.tools import MockBackend, TavilyBackend, ToolError, build_tools


class FakeTavily:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], str]] = []
        self.delay = 0.0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/search", self.search)
        app.router.add_post("/extract", self.extract)
        return app

    async def _record(self, request: web.Request) -> dict[str, Any]:
        body: dict[str, Any] = orjson.loads(await request.read())
        self.calls.append((request.path, body, request.headers.get("Authorization", "")))
        await asyncio.sleep(self.delay)
        return body

    async def search(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        results = [
            {"title": f"Result {n}", "url": f"https://r{n}.example/", "content": f"snippet {n}",
             "score": 1 - n / 10, "published_date": "2026-11-01"}
            for n in range(body["max_results"])
        ]  # fmt: skip
        return web.json_response({"query": body["query"], "results": results})

    async def extract(self, request: web.Request) -> web.Response:
        body = await self._record(request)
        url = body["urls"][0]
        if "missing" in url:
            return web.json_response(
                {"results": [], "failed_results": [{"url": url, "error": "404"}]}
            )
        return web.json_response(
            {"results": [{"url": url, "raw_content": "Title line\n" + "x" * 500}]}
        )


@pytest.fixture
async def tavily() -> AsyncIterator[tuple[FakeTavily, TavilyBackend]]:
    fake = FakeTavily()
    server = TestServer(fake.app())
    await server.start_server()
    backend = TavilyBackend("tvly-test", timeout=0.5, base_url=str(server.make_url("")).rstrip("/"))
    yield fake, backend
    await backend.close()
    await server.close()


async def test_search_maps_results_and_bounds_arguments(
    tavily: tuple[FakeTavily, TavilyBackend],
) -> None:
    fake, backend = tavily
    search = build_tools(backend)["web_search"]
    arguments = search.parse(
        '{"query": "latest", "max_results": 3, "recency_days": 7,'
        ' "exclude_domains": ["spam.example"]}'
    )
    result = await search.run(arguments)
    assert result.summary == "Found 3 candidate sources"
    hits = orjson.loads(result.content)["results"]
    assert hits[0] == {"title": "Result 0", "url": "https://r0.example/", "snippet": "snippet 0",
                       "score": 1.0, "published_at": "2026-11-01"}  # fmt: skip
    [(path, body, authorization)] = fake.calls
    assert path == "/search"
    assert (body["query"], body["max_results"], body["days"]) == ("latest", 3, 7)
    assert body["exclude_domains"] == ["spam.example"]
    assert authorization == "Bearer tvly-test"
    with pytest.raises(ToolError, match="max_results"):
        search.parse('{"query": "x", "max_results": 50}')


async def test_fetch_truncates_and_reports_failures(
    tavily: tuple[FakeTavily, TavilyBackend],
) -> None:
    _, backend = tavily
    fetch = build_tools(backend)["web_fetch"]
    page = orjson.loads(
        (await fetch.run(fetch.parse('{"url": "https://a.example/p", "max_chars": 200}'))).content
    )
    assert (page["title"], page["content_truncated"], len(page["content_text"])) == (
        "Title line",
        True,
        200,
    )
    with pytest.raises(ToolError, match=r"could not fetch https://missing\.example/: 404"):
        await fetch.run(fetch.parse('{"url": "https://missing.example/"}'))
    with pytest.raises(ToolError, match="url"):
        fetch.parse('{"url": "file:///etc/passwd"}')


async def test_a_slow_web_service_times_out_as_a_tool_error(
    tavily: tuple[FakeTavily, TavilyBackend],
) -> None:
    fake, backend = tavily
    fake.delay = 2.0
    search = build_tools(backend)["web_search"]
    with pytest.raises(ToolError, match=r"did not answer within 0\.5s"):
        await search.run(search.parse('{"query": "slow"}'))


async def test_the_mock_web_answers_from_its_fixture() -> None:
    tools = build_tools(MockBackend(None))
    search = tools["web_search"]
    result = await search.run(
        search.parse('{"query": "anything", "include_domains": ["example.org"]}')
    )
    assert [hit["url"] for hit in orjson.loads(result.content)["results"]] == [
        "https://example.org/reviews/sleep-memory"
    ]
