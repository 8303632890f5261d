"""``knowledge_search`` on real passages (Qdrant local mode, the local model): users kept apart."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from qdrant_client import AsyncQdrantClient

from exobrain.agent.tools import ToolError, build_tools, with_knowledge
from exobrain.agent.tools.backend import MockBackend
from exobrain.knowledge import LocalEmbedder, Passage, PassageStore

ADA, BOB = uuid.uuid4(), uuid.uuid4()


@pytest.fixture
async def passages(tmp_path: Path) -> AsyncIterator[PassageStore]:
    client = AsyncQdrantClient(path=str(tmp_path / "qdrant"))
    store = PassageStore(lambda: client, "passages", LocalEmbedder(), index_user_ids=False)
    await store.store(
        [
            Passage(
                str(ADA), "2026/11/02", 3, 0, "user", "2026-11-02T08:00:00Z", "I planted tomatoes"
            ),
            Passage(
                str(ADA), "2026/11/20", 1, 0, "user", "2026-11-20T19:30:00Z", "Read about Rome"
            ),
            Passage(
                str(BOB), "2026/11/05", 1, 0, "user", "2026-11-05T10:00:00Z", "My tomatoes died"
            ),
        ]
    )
    yield store
    await store.close()
    await client.close()


async def search(
    passages: PassageStore, user: uuid.UUID, arguments: dict[str, object]
) -> list[dict[str, object]]:
    tool = with_knowledge({}, passages, user)["knowledge_search"]
    result = await tool.run(tool.parse(orjson.dumps(arguments).decode()))
    found: list[dict[str, object]] = orjson.loads(result.content)["passages"]
    assert result.summary == f"Found {len(found)} passages in your journals"
    return found


async def test_a_user_recalls_their_own_passages_with_journal_and_date(
    passages: PassageStore,
) -> None:
    found = await search(passages, ADA, {"query": "what did I plant in the garden?", "limit": 1})
    assert len(found) == 1
    assert found[0] | {"score": 0} == {
        "text": "I planted tomatoes",
        "journal_reference": "2026/11/02",
        "date": "2026-11-02T08:00:00Z",
        "role": "user",
        "score": 0,
    }


async def test_no_query_reaches_another_users_passages(passages: PassageStore) -> None:
    found = await search(passages, ADA, {"query": "my tomatoes died", "limit": 20})
    assert {hit["text"] for hit in found} == {"I planted tomatoes", "Read about Rome"}
    bob = await search(passages, BOB, {"query": "Rome tomatoes planted", "limit": 20})
    assert [hit["text"] for hit in bob] == ["My tomatoes died"]
    assert await search(passages, uuid.uuid4(), {"query": "tomatoes"}) == []


async def test_the_user_is_not_an_argument_the_model_can_set(passages: PassageStore) -> None:
    tool = with_knowledge({}, passages, ADA)["knowledge_search"]
    with pytest.raises(ToolError, match="user_id"):
        tool.parse(orjson.dumps({"query": "tomatoes", "user_id": str(BOB)}).decode())
    assert "user_id" not in orjson.dumps(tool.spec()).decode()


async def test_it_joins_the_web_tools_of_the_session(passages: PassageStore) -> None:
    tools = with_knowledge(build_tools(MockBackend(None)), passages, ADA)
    assert set(tools) == {"web_search", "web_fetch", "knowledge_search"}
