"""Passages in Qdrant: one point per journal message (or part of one), per user.

The point id is uuid5 of user, journal, sequence and part, so storing a
message again (a job run twice) overwrites its point instead of adding one.
Every search carries a filter on the user id that the caller cannot widen:
a user's query only ever meets that user's passages.

Qdrant's client (~45 MB when imported) is imported and opened on the first
store or search, not with the store: a service whose users never search pays
nothing for it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ._embeddings import Embedder

if TYPE_CHECKING:
    from qdrant_client import AsyncQdrantClient

#: point id = uuid5(this, "user/journal/sequence/part").
PASSAGE_NAMESPACE = uuid.UUID("0b1e7c52-8f3d-5a61-b2c4-7d9e3f5a1c80")


@dataclass(frozen=True, slots=True)
class Passage:
    user_id: str
    journal_reference: str
    sequence: int
    #: 0 for a whole message; n >= 1 for the n-th part of one cut across jobs.
    part: int
    role: str
    created_at: str
    text: str

    @property
    def point_id(self) -> str:
        key = f"{self.user_id}/{self.journal_reference}/{self.sequence}/{self.part}"
        return str(uuid.uuid5(PASSAGE_NAMESPACE, key))


@dataclass(frozen=True, slots=True)
class Found:
    passage: Passage
    score: float


class PassageStore:
    """One deployment's collection (``KNOWLEDGE_COLLECTION``), created on first use."""

    def __init__(
        self,
        open_client: Callable[[], AsyncQdrantClient],
        collection: str,
        embedder: Embedder,
        *,
        index_user_ids: bool,
    ) -> None:
        #: Called once, on a thread, at first use: local mode reads every point when it opens.
        self._open_client = open_client
        self._client: AsyncQdrantClient | None = None
        self._collection = collection
        self._embedder = embedder
        #: A Qdrant server filters faster with it; local mode has none (and warns).
        self._index_user_ids = index_user_ids
        self._ready = False
        self._preparing = asyncio.Lock()

    async def _prepared(self) -> AsyncQdrantClient:
        """On first use (start-up stays fast and light): open the client and create the
        collection when absent."""
        async with self._preparing:
            if self._client is None:
                self._client = await asyncio.to_thread(self._open_client)
            if not self._ready:
                await self._create_collection(self._client)
                self._ready = True
        return self._client

    async def _create_collection(self, client: AsyncQdrantClient) -> None:
        from qdrant_client import models  # noqa: PLC0415 - with the client, on first use

        if await client.collection_exists(self._collection):
            return
        [probe] = await self._embedder.embed(["dimensions"])
        await client.create_collection(
            self._collection,
            vectors_config=models.VectorParams(size=len(probe), distance=models.Distance.COSINE),
        )
        if self._index_user_ids:
            await client.create_payload_index(
                self._collection, "user_id", models.PayloadSchemaType.KEYWORD
            )

    async def store(self, passages: Sequence[Passage]) -> None:
        from qdrant_client import models  # noqa: PLC0415 - with the client, on first use

        client = await self._prepared()
        vectors = await self._embedder.embed([passage.text for passage in passages])
        await client.upsert(
            self._collection,
            points=[
                models.PointStruct(id=passage.point_id, vector=vector, payload=asdict(passage))
                for passage, vector in zip(passages, vectors, strict=True)
            ],
            wait=True,
        )

    async def search(self, user_id: str, query: str, limit: int) -> list[Found]:
        from qdrant_client import models  # noqa: PLC0415 - with the client, on first use

        client = await self._prepared()
        [vector] = await self._embedder.embed([query])
        answer = await client.query_points(
            self._collection,
            query=vector,
            query_filter=models.Filter(
                must=[models.FieldCondition(key="user_id", match=models.MatchValue(value=user_id))]
            ),
            limit=limit,
            with_payload=True,
        )
        return [
            Found(_passage(point.payload or {}), point.score)
            for point in answer.points
            if (point.payload or {}).get("user_id") == user_id  # the filter, checked again
        ]

    async def close(self) -> None:
        await self._embedder.close()


def _passage(payload: dict[str, Any]) -> Passage:
    return Passage(**{name: payload[name] for name in Passage.__dataclass_fields__})
