"""``web_search``: find sources and current facts."""

from __future__ import annotations

import orjson
from pydantic import BaseModel, Field

from .backend import SearchQuery, WebBackend
from .base import Tool, ToolResult


class SearchArguments(BaseModel):
    query: str = Field(min_length=1, max_length=400)
    max_results: int = Field(default=5, ge=1, le=10)
    recency_days: int | None = Field(default=None, ge=1, le=3650)
    include_domains: list[str] = Field(default_factory=list, max_length=20)
    exclude_domains: list[str] = Field(default_factory=list, max_length=20)


class WebSearch(Tool[SearchArguments]):
    name = "web_search"
    description = (
        "Search the web for sources and current facts. Returns results with title, url, "
        "snippet, score and published_at."
    )
    arguments = SearchArguments

    def __init__(self, backend: WebBackend) -> None:
        self._backend = backend

    def announce(self, arguments: SearchArguments) -> tuple[str, str]:
        return "Web search", f"Searching the web for {arguments.query}"

    async def run(self, arguments: SearchArguments) -> ToolResult:
        hits = await self._backend.search(
            SearchQuery(
                arguments.query,
                arguments.max_results,
                arguments.recency_days,
                tuple(arguments.include_domains),
                tuple(arguments.exclude_domains),
            )
        )
        return ToolResult(
            content=orjson.dumps({"results": hits}).decode(),  # hits serialise as their fields
            summary=f"Found {len(hits)} candidate sources",
        )
