"""Embeddings from an OpenAI-compatible ``/v1/embeddings`` (``EMBEDDINGS_BASE_URL``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from openai import AsyncOpenAI, OpenAIError

from exobrain.config import Settings


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
