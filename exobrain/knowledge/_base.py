"""Opening the knowledge base: Qdrant (a server, or local mode in the state dir) and embeddings."""

from __future__ import annotations

import logging

from qdrant_client import AsyncQdrantClient

from exobrain.config import Settings

from ._embeddings import EmbeddingsUnavailable, embedder_for
from ._passages import PassageStore

log = logging.getLogger(__name__)


def qdrant_client(settings: Settings) -> AsyncQdrantClient:
    """``EXOBRAIN_QDRANT_URL``, else local mode in ``<state dir>/qdrant`` (one process only)."""
    if settings.exobrain_qdrant_url is not None:
        return AsyncQdrantClient(url=str(settings.exobrain_qdrant_url))
    path = settings.exobrain_state_dir / "qdrant"
    path.mkdir(parents=True, exist_ok=True)
    return AsyncQdrantClient(path=str(path))


def passage_store(settings: Settings, client: AsyncQdrantClient) -> PassageStore | None:
    """The deployment's passages, or None (logged) when no embeddings are available."""
    try:
        embedder = embedder_for(settings)
    except EmbeddingsUnavailable as exc:
        log.info("knowledge base off: %s", exc)
        return None
    log.info("knowledge base: collection %s, %s", settings.knowledge_collection, embedder.name)
    return PassageStore(
        client,
        settings.knowledge_collection,
        embedder,
        index_user_ids=settings.exobrain_qdrant_url is not None,
    )
