"""Opening the knowledge base: Qdrant (a server, or local mode in the state dir) and embeddings.

Qdrant's client costs ~45 MB of memory to import: it is imported here, when the
knowledge base opens, never by a process that has it off.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from exobrain.config import Settings

from ._embeddings import embedder_for, embeddings_unavailable

if TYPE_CHECKING:
    from qdrant_client import AsyncQdrantClient

    from ._passages import PassageStore

log = logging.getLogger(__name__)


def knowledge_base_off(settings: Settings) -> str | None:
    """Why this process runs without the knowledge base, or None when it has one."""
    if not settings.knowledge_base_enabled:
        return "KNOWLEDGE_BASE_ENABLED=false"
    return embeddings_unavailable(settings)


def qdrant_client(settings: Settings) -> AsyncQdrantClient:
    """``EXOBRAIN_QDRANT_URL``, else local mode in ``<state dir>/qdrant`` (one process only)."""
    from qdrant_client import AsyncQdrantClient  # noqa: PLC0415 - costly; the feature's own

    if settings.exobrain_qdrant_url is not None:
        return AsyncQdrantClient(url=str(settings.exobrain_qdrant_url))
    path = settings.exobrain_state_dir / "qdrant"
    path.mkdir(parents=True, exist_ok=True)
    return AsyncQdrantClient(path=str(path))


def passage_store(settings: Settings, client: AsyncQdrantClient) -> PassageStore | None:
    """The deployment's passages, or None (logged) when the knowledge base is off."""
    from ._passages import PassageStore  # noqa: PLC0415 - Qdrant's models, with its client

    if (why := knowledge_base_off(settings)) is not None:
        log.info("knowledge base off: %s", why)
        return None
    embedder = embedder_for(settings)
    log.info("knowledge base: collection %s, %s", settings.knowledge_collection, embedder.name)
    return PassageStore(
        client,
        settings.knowledge_collection,
        embedder,
        index_user_ids=settings.exobrain_qdrant_url is not None,
    )
