"""The local model in numpy against sentence-transformers' own vectors, and without torch.

``data/minilm_golden.json`` holds vectors that sentence-transformers on torch
computed from the same package's weights (its ``about`` says how): short,
empty, unicode and control-character texts, and two texts past the model's
256-token limit that differ only after it.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exobrain.knowledge import LocalEmbedder

GOLDEN = json.loads((Path(__file__).parent / "data" / "minilm_golden.json").read_text("utf-8"))
TEXTS: list[str] = [case["text"] for case in GOLDEN["cases"]]
VECTORS: list[list[float]] = [case["vector"] for case in GOLDEN["cases"]]


@pytest.fixture
async def embedder() -> AsyncIterator[LocalEmbedder]:
    model = LocalEmbedder()
    yield model
    await model.close()


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.hypot(*a) / math.hypot(*b)


async def test_vectors_match_sentence_transformers(embedder: LocalEmbedder) -> None:
    vectors = await embedder.embed(TEXTS)
    assert len(vectors) == len(TEXTS)
    for text, vector, expected in zip(TEXTS, vectors, VECTORS, strict=True):
        assert len(vector) == 384
        assert math.isclose(math.hypot(*vector), 1.0, abs_tol=1e-5), text
        assert cosine(vector, expected) >= 0.9999, text


async def test_a_vector_does_not_depend_on_its_batch(embedder: LocalEmbedder) -> None:
    """Padding to the batch's longest text and sorting by length change nothing."""
    together = await embedder.embed(TEXTS)
    for text, vector in zip(TEXTS, together, strict=True):
        [alone] = await embedder.embed([text])
        assert max(abs(x - y) for x, y in zip(alone, vector, strict=True)) < 1e-5, text
    assert await embedder.embed([]) == []


async def test_text_past_the_token_limit_is_cut(embedder: LocalEmbedder) -> None:
    long_text = max(TEXTS, key=len)  # 700 tokens
    cut, longer, quarter = await embedder.embed(
        [long_text, long_text + " Quite different.", long_text[: len(long_text) // 4]]
    )
    assert max(abs(x - y) for x, y in zip(cut, longer, strict=True)) < 1e-5
    assert cosine(cut, quarter) < 0.99  # a quarter is under the limit: it differs


def test_the_local_model_never_imports_torch() -> None:
    script = (
        "import asyncio, json, sys\n"
        "from exobrain.knowledge import LocalEmbedder\n"
        "[vector] = asyncio.run(LocalEmbedder().embed(['hello']))\n"
        "heavy = {'torch', 'sentence_transformers', 'transformers'} & set(sys.modules)\n"
        "print(json.dumps({'dimensions': len(vector), 'heavy': sorted(heavy)}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert json.loads(done.stdout) == {"dimensions": 384, "heavy": []}
