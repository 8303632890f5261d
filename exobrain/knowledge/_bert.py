"""A BERT encoder in numpy: the inference forward pass of a Hugging Face ``BertModel``.

Enough to run all-MiniLM-L6-v2 without torch. It reads the weights as
``model.safetensors`` names them and computes in float32 what ``BertModel``
computes in eval mode (no dropout): token + position + segment-0 embeddings,
then per layer self-attention over the unpadded tokens and a GELU feed-forward,
each followed by a residual LayerNorm. The pooler is not used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]

# Elementwise passes run over blocks of this many floats (256 KB), which stay in
# the CPU's cache between passes: GELU's dozen passes take a quarter of the time
# they take over whole arrays, where each pass streams through memory.
_BLOCK = 1 << 16

# Abramowitz & Stegun 7.1.26: |error| < 1.5e-7, below float32's resolution near 1.
_ERF_P = np.float32(0.3275911)
_ERF_A = tuple(np.float32(a) for a in (1.061405429, -1.453152027, 1.421413741, -0.284496736))
_ERF_A1 = np.float32(0.254829592)


@dataclass(frozen=True, slots=True)
class _Layer:
    """One transformer layer, matrices transposed for ``x @ w`` and query|key|value fused."""

    qkv: Array
    qkv_bias: Array
    attention_out: Array
    attention_out_bias: Array
    attention_norm: tuple[Array, Array]
    intermediate: Array
    intermediate_bias: Array
    output: Array
    output_bias: Array
    output_norm: tuple[Array, Array]


class BertEncoder:
    """Token ids and attention mask in, the last layer's hidden states out."""

    def __init__(self, weights: Mapping[str, npt.NDArray[Any]], config: Mapping[str, Any]) -> None:
        positions = config.get("position_embedding_type", "absolute")
        if config.get("hidden_act") != "gelu" or positions != "absolute":
            raise ValueError("only BERT with GELU and absolute positions is supported")
        self._heads = int(config["num_attention_heads"])
        hidden = int(config["hidden_size"])
        # Queries come pre-divided by √(head size), as attention scales the scores.
        query_scale = np.float32(1 / math.sqrt(hidden // self._heads))
        self._eps = np.float32(config["layer_norm_eps"])

        def get(name: str) -> Array:
            return np.ascontiguousarray(weights[name], dtype=np.float32)

        def dense(prefix: str) -> tuple[Array, Array]:
            return np.ascontiguousarray(get(f"{prefix}.weight").T), get(f"{prefix}.bias")

        def norm(prefix: str) -> tuple[Array, Array]:
            return get(f"{prefix}.weight"), get(f"{prefix}.bias")

        self._words = get("embeddings.word_embeddings.weight")
        self._positions = get("embeddings.position_embeddings.weight")
        self._segment = get("embeddings.token_type_embeddings.weight")[0]
        self._embedding_norm = norm("embeddings.LayerNorm")
        self._layers = []
        for index in range(int(config["num_hidden_layers"])):
            prefix = f"encoder.layer.{index}"
            parts = [dense(f"{prefix}.attention.self.{name}") for name in ("query", "key", "value")]
            parts[0] = (parts[0][0] * query_scale, parts[0][1] * query_scale)
            self._layers.append(
                _Layer(
                    np.ascontiguousarray(np.concatenate([w for w, _ in parts], axis=1)),
                    np.concatenate([b for _, b in parts]),
                    *dense(f"{prefix}.attention.output.dense"),
                    norm(f"{prefix}.attention.output.LayerNorm"),
                    *dense(f"{prefix}.intermediate.dense"),
                    *dense(f"{prefix}.output.dense"),
                    norm(f"{prefix}.output.LayerNorm"),
                )
            )

    @property
    def hidden_size(self) -> int:
        return int(self._words.shape[1])

    @property
    def max_positions(self) -> int:
        return int(self._positions.shape[0])

    def __call__(self, ids: npt.NDArray[np.int64], mask: npt.NDArray[np.bool_]) -> Array:
        """``ids`` and ``mask`` (batch, length) → hidden states (batch, length, hidden)."""
        batch, length = ids.shape
        x = self._words[ids] + self._positions[:length] + self._segment
        x = self._layer_norm(x.reshape(batch * length, -1), self._embedding_norm)
        # Padding gets the most negative float as attention bias, as BertModel does.
        bias = np.where(mask, np.float32(0), np.finfo(np.float32).min)[:, None, None, :]
        for layer in self._layers:
            x = self._layer(x, layer, bias, batch, length)
        return x.reshape(batch, length, -1)

    def _layer(self, x: Array, layer: _Layer, bias: Array, batch: int, length: int) -> Array:
        hidden = x.shape[1]
        size = hidden // self._heads
        qkv: Array = x @ layer.qkv
        qkv += layer.qkv_bias
        # (batch·length, 3·hidden) → query, key, value: (batch, heads, length, size)
        q, k, v = qkv.reshape(batch, length, 3, self._heads, size).transpose(2, 0, 3, 1, 4)
        scores = q @ k.transpose(0, 1, 3, 2)
        scores += bias
        _in_blocks(_softmax, scores)
        context = (scores @ v).transpose(0, 2, 1, 3).reshape(batch * length, hidden)
        attended: Array = context @ layer.attention_out
        attended += layer.attention_out_bias
        attended += x
        attended = self._layer_norm(attended, layer.attention_norm)
        inner: Array = attended @ layer.intermediate
        inner += layer.intermediate_bias
        _in_blocks(_gelu, inner)
        out: Array = inner @ layer.output
        out += layer.output_bias
        out += attended
        return self._layer_norm(out, layer.output_norm)

    def _layer_norm(self, x: Array, weights: tuple[Array, Array]) -> Array:
        scale, shift = weights
        x = x - x.mean(axis=-1, keepdims=True)
        variance = np.mean(np.square(x), axis=-1, keepdims=True)
        x *= 1 / np.sqrt(variance + self._eps)
        x *= scale
        x += shift
        return x


def _in_blocks(function: Callable[[Array], None], x: Array) -> None:
    """``function`` (in place, row-wise) over blocks of ``x``'s rows of about ``_BLOCK`` floats."""
    rows = x.reshape(-1, x.shape[-1])  # a view: x is contiguous
    step = max(1, _BLOCK // rows.shape[1])
    for start in range(0, rows.shape[0], step):
        function(rows[start : start + step])


def _softmax(scores: Array) -> None:
    """Softmax over the last axis, in place."""
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)


def _gelu(x: Array) -> None:
    """The exact (erf) GELU that BERT's ``"gelu"`` names, in place: ``x·(1 + erf(x/√2))/2``."""
    z = np.abs(x) * np.float32(1 / math.sqrt(2))
    t = 1 / (1 + _ERF_P * z)
    poly = _ERF_A[0] * t
    for coefficient in _ERF_A[1:]:
        poly += coefficient
        poly *= t
    poly += _ERF_A1
    poly *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z  # c = 1 - erf(|x|/√2)
    # x·(1 + erf(x/√2))/2 is x - |x|·c/2 for x ≥ 0 and x·c/2 for x < 0: max(x, 0) - |x|·c/2
    poly *= np.abs(x)
    poly *= np.float32(0.5)
    np.maximum(x, 0, out=x)
    x -= poly
