"""The knowledge base of this process: passages in the app's Qdrant, when embeddings exist.

On unless ``KNOWLEDGE_BASE_ENABLED=false``, whenever the process has Qdrant (a
server, or local mode in worker 0) and embeddings (``EMBEDDINGS_BASE_URL``, or
the local model installed). The in-process job worker stores passages through
it; the agent searches it. Off, neither Qdrant nor its client is opened or
imported; on, local mode is opened (and the client imported) at first use.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiohttp import web

from exobrain.http.resources import QDRANT, SETTINGS, qdrant_ctx
from exobrain.knowledge import knowledge_base_off

if TYPE_CHECKING:
    from exobrain.knowledge import PassageStore

log = logging.getLogger(__name__)

PASSAGES: web.AppKey[PassageStore] = web.AppKey("passages")


def setup_knowledge_base(app: web.Application) -> None:
    """Qdrant, then the passages in it, when the knowledge base is on."""
    why = knowledge_base_off(app[SETTINGS])
    if why is not None:
        log.info("knowledge base off: %s", why)
        return
    app.cleanup_ctx.extend([qdrant_ctx, knowledge_base_ctx])


async def knowledge_base_ctx(app: web.Application) -> AsyncIterator[None]:
    from exobrain.knowledge import passage_store  # noqa: PLC0415 - the feature's, when on

    passages = passage_store(app[SETTINGS], app[QDRANT].client) if QDRANT in app else None
    if passages is None:
        yield
        return
    app[PASSAGES] = passages
    yield
    await passages.close()
