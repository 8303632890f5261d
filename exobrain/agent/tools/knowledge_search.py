"""``knowledge_search``: recall what the user wrote in earlier journals.

The tool is built for one user (the session's owner) and searches only that
user's passages: the user id is fixed at construction, never an argument the
model could set, and the search filters on it in Qdrant.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field

from .base import Tool, ToolResult

if TYPE_CHECKING:
    from exobrain.knowledge import Found


class PassageSearch(Protocol):
    async def search(self, user_id: str, query: str, limit: int) -> list[Found]: ...


class KnowledgeArguments(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=400)
    limit: int = Field(default=5, ge=1, le=20)


class KnowledgeSearch(Tool[KnowledgeArguments]):
    name = "knowledge_search"
    description = (
        "Search the user's own earlier journal messages (their knowledge base) by meaning. "
        "Returns passages with text, journal_reference (YYYY/MM/DD), date, role and score."
    )
    arguments = KnowledgeArguments

    def __init__(self, passages: PassageSearch, user_id: uuid.UUID) -> None:
        self._passages = passages
        self._user_id = str(user_id)

    def announce(self, arguments: KnowledgeArguments) -> tuple[str, str]:
        return "Knowledge search", f"Searching your journals for {arguments.query}"

    async def run(self, arguments: KnowledgeArguments) -> ToolResult:
        found = await self._passages.search(self._user_id, arguments.query, arguments.limit)
        passages = [
            {
                "text": hit.passage.text,
                "journal_reference": hit.passage.journal_reference,
                "date": hit.passage.created_at,
                "role": hit.passage.role,
                "score": round(hit.score, 4),
            }
            for hit in found
        ]
        return ToolResult(
            content=orjson.dumps({"passages": passages}).decode(),
            summary=f"Found {len(passages)} passages in your journals",
        )
