"""The knowledge base: journal messages as passages in Qdrant, embedded, and searched per user."""

from ._base import passage_store, qdrant_client
from ._embeddings import (
    Embedder,
    EmbeddingsUnavailable,
    LocalEmbedder,
    RemoteEmbedder,
    embedder_for,
)
from ._passages import Found, Passage, PassageStore
from ._update import update_handler

__all__ = [
    "Embedder",
    "EmbeddingsUnavailable",
    "Found",
    "LocalEmbedder",
    "Passage",
    "PassageStore",
    "RemoteEmbedder",
    "embedder_for",
    "passage_store",
    "qdrant_client",
    "update_handler",
]
