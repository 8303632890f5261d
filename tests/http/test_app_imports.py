"""A feature's client library is imported only when the feature is on (memory: issue 17).

Each check starts the whole app (every ``cleanup_ctx``, on the session's real
servers) in a fresh interpreter and names the costly clients it imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from exobrain.config import Settings

#: Qdrant's client, the graph driver, the model provider's and Tavily's clients.
CLIENTS = ("qdrant_client", "neo4j", "openai", "tavily")

_SERVE = """
import asyncio, json, sys
from aiohttp import web
from exobrain.config import Settings
from exobrain.http import create_app

async def main():
    runner = web.AppRunner(create_app(Settings(_env_file=None, **json.loads(sys.argv[1]))))
    await runner.setup()  # every resource and actor has started
    try:
        print(json.dumps([name for name in json.loads(sys.argv[2]) if name in sys.modules]))
    finally:
        await runner.cleanup()

asyncio.run(main())
"""


def imported_when_serving(settings: Settings) -> list[str]:
    values = settings.model_dump(mode="json", exclude_unset=True)
    values.pop("_env_file", None)
    done = subprocess.run(
        [sys.executable, "-c", _SERVE, json.dumps(values), json.dumps(CLIENTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    imported: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return imported


def test_chat_with_the_mock_agent_and_no_knowledge_base_imports_none_of_them(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(main_agent_use_mock=True, knowledge_base_enabled=False)
    assert imported_when_serving(settings) == []


def test_qdrants_local_mode_is_imported_on_first_use_not_at_start(
    make_settings: Callable[..., Settings],
) -> None:
    """The knowledge base on, in local mode (tests/http/test_knowledge_base.py uses it)."""
    settings = make_settings(main_agent_use_mock=True, knowledge_base_enabled=True)
    assert imported_when_serving(settings) == []


def test_each_client_comes_with_its_feature(make_settings: Callable[..., Settings]) -> None:
    features: dict[str, Any] = {
        "main_agent_use_mock": False,  # openai (nothing is asked of the provider at start)
        "knowledge_base_enabled": True,  # Qdrant: a server's client, for its readiness...
        "exobrain_qdrant_url": "http://127.0.0.1:9",
        "embeddings_base_url": "http://127.0.0.1:9/v1",  # ...with embeddings from an endpoint
        "exobrain_memgraph_url": "bolt://127.0.0.1:9",  # neo4j (connects on first use)
        "tavily_api_key": "tvly-test",  # tavily
    }
    assert imported_when_serving(make_settings(**features)) == list(CLIENTS)
