"""``web_fetch``: read one page the user gave or a search returned."""

from __future__ import annotations

import orjson
from pydantic import BaseModel, Field, HttpUrl

from .backend import WebBackend, now_iso
from .base import Tool, ToolResult


class FetchArguments(BaseModel):
    url: HttpUrl
    max_chars: int = Field(default=8000, ge=200, le=50_000)


class WebFetch(Tool[FetchArguments]):
    name = "web_fetch"
    description = (
        "Fetch the readable text of one web page: only URLs from search results or given by "
        "the user. Returns url, title, content_text, extracted_at and content_truncated."
    )
    arguments = FetchArguments

    def __init__(self, backend: WebBackend) -> None:
        self._backend = backend

    def announce(self, arguments: FetchArguments) -> tuple[str, str]:
        return "Web fetch", f"Looking at {arguments.url}"

    async def run(self, arguments: FetchArguments) -> ToolResult:
        page = await self._backend.fetch(str(arguments.url))
        truncated = len(page.content_text) > arguments.max_chars
        return ToolResult(
            content=orjson.dumps(
                {
                    "url": page.url,
                    "title": page.title,
                    "content_text": page.content_text[: arguments.max_chars],
                    "extracted_at": now_iso(),
                    "content_truncated": truncated,
                }
            ).decode(),
            summary=f"Summarized {page.title}",
        )
