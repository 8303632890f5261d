"""all-MiniLM-L6-v2 as sentence-transformers runs it, without torch.

From the model's files as sentence-transformers saves them (``tokenizer.json``,
``config.json``, ``model.safetensors``, ``modules.json``, the pooling and
``max_seq_length`` configs), this computes what sentence-transformers computes:
the WordPiece tokenizer (the ``tokenizers`` library) truncating at
``max_seq_length``, the BERT encoder in numpy (:mod:`._bert`), the mean of the
unpadded tokens, L2 normalisation. Texts are encoded in batches of similar
length, each padded to its longest.

The batches run on a thread per core, each with a single-threaded BLAS:
BLAS's own threads pay a rendezvous for each of attention's small matrix
products, which on a busy machine costs many times their work (22 texts took
22 s that way, 2.3 s this way, on 2 cores at load 13), and leave the
elementwise passes (GELU, softmax, LayerNorm) on one core.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file
from threadpoolctl import ThreadpoolController
from tokenizers import Tokenizer

from ._bert import BertEncoder

BATCH_SIZE = 32
# One call at a time has every core, and BLAS's thread limit is the process's, not a call's.
_ENCODING = threading.Lock()
_PIPELINE = [
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
]


class MiniLM:
    """Texts → unit vectors (float32, one row a text)."""

    def __init__(self, tokenizer: Tokenizer, encoder: BertEncoder) -> None:
        self._tokenizer = tokenizer
        self._encoder = encoder
        self._threads = len(os.sched_getaffinity(0))
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="minilm")
        self._blas = ThreadpoolController()  # numpy is loaded: its BLAS is found

    @classmethod
    def load(cls, directory: Path) -> MiniLM:
        """The model saved in ``directory``; a model of another shape is a ValueError."""
        modules = [module["type"] for module in _json(directory / "modules.json")]
        pooling = _json(directory / "1_Pooling" / "config.json")
        if modules != _PIPELINE or not pooling["pooling_mode_mean_tokens"]:
            raise ValueError(f"{directory}: not a mean-pooled, normalised sentence model")
        encoder = BertEncoder(
            load_file(directory / "model.safetensors"), _json(directory / "config.json")
        )
        max_length = min(
            int(_json(directory / "sentence_bert_config.json")["max_seq_length"]),
            encoder.max_positions,
        )
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        tokenizer.no_padding()  # the file pads every text to 128: batches pad to their longest
        tokenizer.enable_truncation(max_length)
        return cls(tokenizer, encoder)

    @property
    def dimensions(self) -> int:
        return self._encoder.hidden_size

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        encodings = self._tokenizer.encode_batch([text.strip() for text in texts])
        ids = [encoding.ids for encoding in encodings]
        vectors = np.empty((len(texts), self.dimensions), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda index: len(ids[index]))
        size = max(1, min(BATCH_SIZE, math.ceil(len(order) / self._threads)))  # every core
        batches = [order[start : start + size] for start in range(0, len(order), size)]
        with _ENCODING, self._blas.limit(limits=1, user_api="blas"):
            done = self._pool.map(lambda rows: self._batch([ids[row] for row in rows]), batches)
            for rows, batch in zip(batches, done, strict=True):
                vectors[rows] = batch
        return vectors

    def close(self) -> None:
        self._pool.shutdown(wait=False)

    def _batch(self, ids: list[list[int]]) -> npt.NDArray[np.float32]:
        width = max(len(row) for row in ids)
        padded = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.bool_)
        for index, row in enumerate(ids):
            padded[index, : len(row)] = row
            mask[index, : len(row)] = True
        hidden = self._encoder(padded, mask)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return pooled / np.maximum(norms, 1e-12)  # type: ignore[no-any-return]


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
