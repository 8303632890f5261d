"""The knowledge base of this process: passages in the app's Qdrant, when embeddings exist.

On whenever the process has Qdrant (a server, or local mode in worker 0) and
embeddings (``EMBEDDINGS_BASE_URL``, or the local model installed). The
in-process job worker stores passages through it; the agent searches it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from exobrain.http.resources import QDRANT, SETTINGS
from exobrain.knowledge import PassageStore, passage_store

PASSAGES = web.AppKey("passages", PassageStore)


async def knowledge_base_ctx(app: web.Application) -> AsyncIterator[None]:
    passages = passage_store(app[SETTINGS], app[QDRANT]) if QDRANT in app else None
    if passages is None:
        yield
        return
    app[PASSAGES] = passages
    yield
    await passages.close()
