"""schemathesis against the app's own ``/openapi.json``: every operation, every check.

The app runs for real (PostgreSQL, Redis, NATS, actors, the in-process job
orchestrator) on a port, in a thread with its own event loop: schemathesis
calls it synchronously over HTTP. The fuzzer is a seeded user (bearer token)
and the operator (``OPS_TOKEN``); each operation gets the deterministic
coverage cases and a bounded number of generated ones, from a fixed seed, so
CI sees the same requests every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from threading import Thread
from typing import Any, TypeVar

import hypothesis
import pykka
import pytest
import requests
import schemathesis
from aiohttp import web
from orchestrator.support import jobs_stream

from exobrain.auth import hash_password
from exobrain.config import Settings
from exobrain.http import create_app
from exobrain.http.docs import openapi_document
from exobrain.http.resources import PG_POOL
from exobrain.store.users import ensure_password_user

T = TypeVar("T")

#: Generated cases per operation, besides the coverage phase's deterministic ones.
EXAMPLES = 15
PASSWORD = "correct horse battery"
#: What a well-formed settings update may get: schemathesis's statuses for valid data, and
#: 400. Which settings exist, and the values each takes, are rows in the database, not
#: schema: a well-formed update of an unknown key is 400.
CONFIG_UPDATE = ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]


@dataclass(frozen=True, slots=True)
class Served:
    url: str
    access_token: str
    ops_token: str


class _Loop:
    """An event loop in a thread of its own, for an app that synchronous clients call."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = Thread(target=self.loop.run_forever, name="served-app", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@contextlib.contextmanager
def serving(app: web.Application, loop: _Loop) -> Iterator[str]:
    """Serve ``app`` on a free local port; its base URL."""
    runner = web.AppRunner(app)
    loop.run(runner.setup())
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run(site.start())
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        loop.run(runner.cleanup())


async def _seed_user(app: web.Application) -> str:
    email = f"fuzz.{secrets.token_hex(4)}@example.test"
    password_hash = await asyncio.to_thread(hash_password, PASSWORD)
    async with app[PG_POOL].acquire() as connection, connection.transaction():
        await ensure_password_user(connection, email, "Fuzz", password_hash)
    return email


@pytest.fixture(scope="module")
def served(
    settings_factory: Callable[..., Settings],
    tmp_path_factory: pytest.TempPathFactory,
    nats_url: str,
    namespace: str,
) -> Iterator[Served]:
    loop = _Loop()
    try:
        stream = jobs_stream(nats_url, namespace)
        jobs = loop.run(stream.__aenter__())
        try:
            ops_token = secrets.token_urlsafe(16)
            base = settings_factory(tmp_path_factory.mktemp("contract"))
            settings = settings_factory(
                base.exobrain_state_dir,
                redis_key_prefix=f"{base.redis_key_prefix}{secrets.token_hex(4)}:",
                main_agent_use_mock=True,
                job_orchestrator_in_process=True,
                ops_token=ops_token,
                **jobs.settings,
            )
            app = create_app(settings)
            with serving(app, loop) as url:
                email = loop.run(_seed_user(app))
                login = requests.post(
                    f"{url}/api/auth/login",
                    json={"email": email, "password": PASSWORD, "issuance_policy": "tokens"},
                    timeout=30,
                )
                assert login.status_code == 200, login.text
                yield Served(url, login.json()["access_token"], ops_token)
        finally:
            loop.run(stream.__aexit__(None, None, None))
    finally:
        loop.close()
        pykka.ActorRegistry.stop_all(block=True, timeout=10)


def _auth(security: list[dict[str, list[str]]], served: Served) -> dict[str, str]:
    """The credentials an operation asks for: the operator's token, or the user's."""
    schemes = {scheme for requirement in security for scheme in requirement}
    if "opsToken" in schemes:
        return {"Authorization": f"Bearer {served.ops_token}"}
    if "bearerAuth" in schemes:
        return {"Authorization": f"Bearer {served.access_token}"}
    return {}


#: The document as the app generates it; ``test_the_fuzzed_document_is_the_one_served``
#: checks that the running app serves exactly this one.
DOCUMENT = openapi_document(create_app(Settings(_env_file=None, app_env="local")))

schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "seed": 14,
            "generation": {"deterministic": True, "max-examples": EXAMPLES, "database": "none"},
            "request-timeout": 30,
            # The document declares no links between operations: nothing to chain.
            "phases": {"stateful": {"enabled": False}},
            "operations": [
                {
                    "include-operation-id": "patch_configs",
                    "checks": {"positive_data_acceptance": {"expected-statuses": CONFIG_UPDATE}},
                }
            ],
        }
    ),
).exclude(
    # An upgrade to a WebSocket is no request-and-response exchange for an HTTP client;
    # tests/http/test_chat_socket.py covers its refusals (401, 403) and the protocol after it.
    operation_id="chat_socket"
)


@pytest.fixture(autouse=True)
def stop_all_actors() -> None:
    """The module's app outlives each test (conftest's fixture would stop its actors after
    the first one); it stops them itself when the module ends."""


@schema.parametrize()
@hypothesis.settings(deadline=None, database=None)
def test_every_operation_keeps_its_contract(case: schemathesis.Case[Any], served: Served) -> None:
    security = case.operation.definition.raw.get("security", [])
    case.call_and_validate(base_url=served.url, headers=_auth(security, served))


def test_the_fuzzed_document_is_the_one_served(served: Served) -> None:
    assert requests.get(f"{served.url}/openapi.json", timeout=30).json() == DOCUMENT
