"""The agent's tools. A new tool is one module, registered in :func:`build_tools`."""

from __future__ import annotations

import uuid
from typing import Any

from .backend import MockBackend, TavilyBackend, WebBackend
from .base import Tool, ToolError, ToolResult
from .knowledge_search import KnowledgeSearch, PassageSearch
from .web_fetch import WebFetch
from .web_search import WebSearch

Tools = dict[str, Tool[Any]]


def build_tools(web: WebBackend) -> Tools:
    tools: list[Tool[Any]] = [WebSearch(web), WebFetch(web)]
    return {tool.name: tool for tool in tools}


def with_knowledge(tools: Tools, passages: PassageSearch, user_id: uuid.UUID) -> Tools:
    """``tools`` plus ``knowledge_search`` over ``user_id``'s passages only (one per session)."""
    search = KnowledgeSearch(passages, user_id)
    return {**tools, search.name: search}


__all__ = [
    "KnowledgeSearch",
    "MockBackend",
    "PassageSearch",
    "TavilyBackend",
    "Tool",
    "ToolError",
    "ToolResult",
    "Tools",
    "WebBackend",
    "build_tools",
    "with_knowledge",
]
