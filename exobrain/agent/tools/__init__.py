"""The agent's tools. A new tool is one module, registered in :func:`build_tools`."""

from __future__ import annotations

from typing import Any

from .backend import MockBackend, TavilyBackend, WebBackend
from .base import Tool, ToolError, ToolResult
from .web_fetch import WebFetch
from .web_search import WebSearch

Tools = dict[str, Tool[Any]]


def build_tools(web: WebBackend) -> Tools:
    tools: list[Tool[Any]] = [WebSearch(web), WebFetch(web)]
    return {tool.name: tool for tool in tools}


__all__ = [
    "MockBackend",
    "TavilyBackend",
    "Tool",
    "ToolError",
    "ToolResult",
    "Tools",
    "WebBackend",
    "build_tools",
]
