"""The knowledge base: journal messages as passages in Qdrant, embedded, and searched per user.

Each name is imported from its module on first use (PEP 562): Qdrant's client
and the openai client weigh tens of MB, and a process that has the knowledge
base off, or that only asks :func:`knowledge_base_off`, imports neither.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._base import LazyQdrant, knowledge_base_off, passage_store
    from ._embeddings import Embedder, EmbeddingsUnavailable, LocalEmbedder, embedder_for
    from ._passages import Found, Passage, PassageStore
    from ._remote import RemoteEmbedder
    from ._update import update_handler

_MODULES = {
    "LazyQdrant": "._base",
    "knowledge_base_off": "._base",
    "passage_store": "._base",
    "Embedder": "._embeddings",
    "EmbeddingsUnavailable": "._embeddings",
    "LocalEmbedder": "._embeddings",
    "embedder_for": "._embeddings",
    "Found": "._passages",
    "Passage": "._passages",
    "PassageStore": "._passages",
    "RemoteEmbedder": "._remote",
    "update_handler": "._update",
}


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULES[name], __name__), name)
    globals()[name] = value  # found directly from now on
    return value


__all__ = [
    "Embedder",
    "EmbeddingsUnavailable",
    "Found",
    "LazyQdrant",
    "LocalEmbedder",
    "Passage",
    "PassageStore",
    "RemoteEmbedder",
    "embedder_for",
    "knowledge_base_off",
    "passage_store",
    "update_handler",
]
