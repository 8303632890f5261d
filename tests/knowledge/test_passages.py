"""Passages in Qdrant's local mode with the local model: idempotent storage, users kept apart."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from qdrant_client import AsyncQdrantClient

from exobrain.config import Settings
from exobrain.knowledge import LazyQdrant, LocalEmbedder, Passage, PassageStore, passage_store

COLLECTION = "passages"


@pytest.fixture
async def qdrant(tmp_path: Path) -> AsyncIterator[AsyncQdrantClient]:
    client = AsyncQdrantClient(path=str(tmp_path / "qdrant"))
    yield client
    await client.close()


@pytest.fixture
async def passages(qdrant: AsyncQdrantClient) -> AsyncIterator[PassageStore]:
    store = PassageStore(lambda: qdrant, COLLECTION, LocalEmbedder(), index_user_ids=False)
    yield store
    await store.close()


def passage(user_id: str, sequence: int, text: str, part: int = 0) -> Passage:
    return Passage(user_id, "2026/12/01", sequence, part, "user", "2026-12-01T09:00:00Z", text)


async def test_a_passage_stored_again_overwrites_itself(
    passages: PassageStore, qdrant: AsyncQdrantClient
) -> None:
    user = str(uuid.uuid4())
    first = [passage(user, 1, "I planted tomatoes"), passage(user, 2, "long text", part=1)]
    await passages.store(first)
    await passages.store([*first, passage(user, 2, "long text, continued", part=2)])
    assert (await qdrant.count(COLLECTION)).count == 3
    [found] = await passages.search(user, "which vegetables did I plant?", limit=1)
    assert found.passage == first[0]


async def test_a_search_finds_only_the_asking_users_passages(passages: PassageStore) -> None:
    ada, bob = str(uuid.uuid4()), str(uuid.uuid4())
    await passages.store(
        [
            passage(ada, 1, "My bank PIN hint is the year of the moon landing"),
            passage(bob, 1, "I planted tomatoes and basil in the garden"),
            passage(bob, 2, "The bank PIN hint is my cat's name"),
        ]
    )
    found = await passages.search(ada, "garden tomatoes basil PIN cat bank", limit=10)
    assert [f.passage.text for f in found] == ["My bank PIN hint is the year of the moon landing"]
    bob_found = await passages.search(bob, "what did I plant?", limit=10)
    assert {f.passage.user_id for f in bob_found} == {bob}
    assert bob_found[0].passage.text == "I planted tomatoes and basil in the garden"
    assert await passages.search(str(uuid.uuid4()), "bank PIN", limit=10) == []


async def test_local_mode_opens_at_the_first_search_and_finds_what_was_stored_before(
    make_settings: Callable[..., Settings],
) -> None:
    """The service's Qdrant opens lazily: a store made at start reads nothing until a user
    searches, and that first search answers from the points a previous run left."""
    settings = make_settings(knowledge_collection=COLLECTION)
    user = str(uuid.uuid4())
    earlier = LazyQdrant(settings)
    store = passage_store(settings, earlier.client)
    assert store is not None
    await store.store([passage(user, 1, "I planted tomatoes")])
    await store.close()
    await earlier.close()

    qdrant = LazyQdrant(settings)
    restarted = passage_store(settings, qdrant.client)
    assert restarted is not None
    opened = [qdrant.opened]
    [found] = await restarted.search(user, "what did I plant?", limit=3)
    opened.append(qdrant.opened)
    assert found.passage.text == "I planted tomatoes"
    assert opened == [False, True]
    await restarted.close()
    await qdrant.close()
