"""Opening the knowledge base: Qdrant (a server, or local mode in the state dir) and embeddings.

Qdrant's client costs ~45 MB of memory to import: it is imported here, when the
knowledge base is first used, never by a process that has it off.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
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


class LazyQdrant:
    """The deployment's Qdrant client, imported and opened on first use.

    A service whose users never search stays ~45 MB lighter (the client's
    import), and local mode reads no points until then. Whoever makes one closes it.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: AsyncQdrantClient | None = None
        self._opening = threading.Lock()  # first use may come from several threads

    @property
    def opened(self) -> bool:
        return self._client is not None

    def client(self) -> AsyncQdrantClient:
        """The client, opened now if it was not (blocking: call it off the event loop)."""
        with self._opening:
            if self._client is None:
                self._client = qdrant_client(self._settings)
            return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def passage_store(
    settings: Settings, open_client: Callable[[], AsyncQdrantClient]
) -> PassageStore | None:
    """The deployment's passages, or None (logged) when the knowledge base is off."""
    from ._passages import PassageStore  # noqa: PLC0415 - its module, with the feature

    if (why := knowledge_base_off(settings)) is not None:
        log.info("knowledge base off: %s", why)
        return None
    embedder = embedder_for(settings)
    log.info("knowledge base: collection %s, %s", settings.knowledge_collection, embedder.name)
    return PassageStore(
        open_client,
        settings.knowledge_collection,
        embedder,
        index_user_ids=settings.exobrain_qdrant_url is not None,
    )
