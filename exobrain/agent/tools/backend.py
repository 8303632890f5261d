"""Where web tools get their answers: Tavily, or a JSON fixture for mock mode."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import orjson

from .base import ToolError


@dataclass(frozen=True, slots=True)
class SearchHit:
    title: str
    url: str
    snippet: str
    score: float
    published_at: str | None


@dataclass(frozen=True, slots=True)
class SearchQuery:
    text: str
    max_results: int
    recency_days: int | None = None
    include_domains: tuple[str, ...] = ()
    exclude_domains: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Page:
    url: str
    title: str
    content_text: str


class WebBackend(Protocol):
    async def search(self, query: SearchQuery) -> list[SearchHit]: ...

    async def fetch(self, url: str) -> Page: ...

    async def close(self) -> None: ...


class TavilyBackend:
    """The real web, through tavily-python, each call bounded by ``timeout`` seconds."""

    def __init__(self, api_key: str, *, timeout: float, base_url: str | None = None) -> None:
        from tavily import AsyncTavilyClient  # noqa: PLC0415 - ~10 MB of memory, only with a key

        self._client = AsyncTavilyClient(api_key=api_key, api_base_url=base_url)
        self._timeout = timeout

    async def search(self, query: SearchQuery) -> list[SearchHit]:
        answer = await self._call(
            self._client.search(
                query.text,
                max_results=query.max_results,
                days=query.recency_days,
                topic="news" if query.recency_days else "general",
                include_domains=list(query.include_domains) or None,
                exclude_domains=list(query.exclude_domains) or None,
                timeout=self._timeout,
            )
        )
        return [
            SearchHit(
                title=str(hit.get("title", "")),
                url=str(hit.get("url", "")),
                snippet=str(hit.get("content", "")),
                score=float(hit.get("score") or 0.0),
                published_at=hit.get("published_date"),
            )
            for hit in answer.get("results", [])
        ]

    async def fetch(self, url: str) -> Page:
        answer = await self._call(self._client.extract(urls=[url], timeout=self._timeout))
        results = answer.get("results") or []
        if not results:
            failed = answer.get("failed_results") or [{}]
            raise ToolError(f"could not fetch {url}: {failed[0].get('error', 'no content')}")
        page = results[0]
        content = str(page.get("raw_content") or "")
        return Page(
            url=url,
            title=str(page.get("title") or _first_line(content) or url),
            content_text=content,
        )

    async def close(self) -> None:
        await self._client.close()

    async def _call(self, request: Any) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self._timeout):
                answer: dict[str, Any] = await request
        except TimeoutError:
            raise ToolError(f"the web service did not answer within {self._timeout:g}s") from None
        except ToolError:
            raise
        except Exception as exc:  # the SDK raises many kinds; the user gets a sentence
            raise ToolError(f"the web service failed: {exc}") from exc
        return answer


class MockBackend:
    """Answers from a JSON fixture.

    Shape: ``{"search": [hit, ...], "pages": {url: {"title": ..., "content_text": ...}}}``.
    """

    def __init__(self, path: Path | None) -> None:
        if path is None:
            raw = resources.files(__package__).joinpath("web_mock.json").read_bytes()
        else:
            raw = path.read_bytes()
        fixture = orjson.loads(raw)
        self._hits = [SearchHit(**hit) for hit in fixture.get("search", [])]
        self._pages = {url: Page(url=url, **page) for url, page in fixture.get("pages", {}).items()}

    async def search(self, query: SearchQuery) -> list[SearchHit]:
        hits = [
            hit
            for hit in self._hits
            if not any(domain in hit.url for domain in query.exclude_domains)
            and (
                not query.include_domains
                or any(domain in hit.url for domain in query.include_domains)
            )
        ]
        return hits[: query.max_results]

    async def fetch(self, url: str) -> Page:
        if url in self._pages:
            return self._pages[url]
        raise ToolError(f"could not fetch {url}: not in the mock web")

    async def close(self) -> None:
        """Nothing to release."""


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:120] if text.strip() else ""


def now_iso() -> str:
    return datetime.now(UTC).isoformat()
