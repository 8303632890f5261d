"""``/api/users/me/configs``: the newest reference frontend's settings contract.

The tests share a database of their own: one of them adds a boolean setting to the
definitions, which every user then sees.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from auth_support import Account, AiohttpClient, Client, create_account, login_tokens, start

from exobrain.config import Settings
from exobrain.http.resources import PG_POOL

CONFIGS = "/api/users/me/configs"
THEME = {
    "key": "frontend.theme",
    "name": "Theme",
    "config_type": "choice",
    "description": "The colour scheme of the assistant's web interface",
    "options": [
        {"value": "gruvbox-dark", "label": "Gruvbox Dark"},
        {"value": "purple-intelligence", "label": "Purple Intelligence"},
    ],
    "value": "gruvbox-dark",
    "default_value": "gruvbox-dark",
    "using_default": True,
}
PURPLE = {**THEME, "value": "purple-intelligence", "using_default": False}
COMPACT = {
    "key": "journal.compact",
    "name": "Compact journal",
    "config_type": "boolean",
    "description": "Fewer lines per message",
    "options": [],
    "value": False,
    "default_value": False,
    "using_default": True,
}


@pytest.fixture(scope="module")
def configs_database(database_factory: Callable[[], str]) -> str:
    return database_factory()


@pytest.fixture
async def client(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], configs_database: str
) -> Client:
    return await start(aiohttp_client, make_settings, assistant_db_dsn=configs_database)


class Member:
    """A signed-in user who reads and changes their settings."""

    def __init__(self, client: Client, account: Account, token: str) -> None:
        self.client, self.user_id = client, account.user_id
        self.headers = {"Authorization": f"Bearer {token}"}

    async def configs(self) -> list[dict[str, Any]]:
        response = await self.client.get(CONFIGS, headers=self.headers)
        assert response.status == 200, await response.text()
        body: dict[str, list[dict[str, Any]]] = await response.json()
        return body["configs"]

    async def patch(self, body: Any) -> tuple[int, Any]:
        response = await self.client.patch(CONFIGS, json=body, headers=self.headers)
        return response.status, await response.json()

    async def stored(self) -> list[Any]:
        """The user's override rows, as the reference stores them too."""
        rows = await self.client.app[PG_POOL].fetch(
            "SELECT value FROM user_config_values WHERE user_id = $1 ORDER BY value::text",
            self.user_id,
        )
        return [row["value"] for row in rows]


async def member(client: Client) -> Member:
    account = await create_account(client)
    return Member(client, account, (await login_tokens(client, account))["access_token"])


async def test_configs_need_a_signed_in_user(client: Client) -> None:
    for method in ("GET", "PATCH"):
        response = await client.request(method, CONFIGS, json={})
        assert response.status == 401, method
        assert await response.json() == {"detail": "authentication required"}


async def test_a_new_user_sees_the_theme_at_its_default(client: Client) -> None:
    assert await (await member(client)).configs() == [THEME]


async def test_a_choice_is_kept_for_its_user_only(client: Client) -> None:
    ada, grace = await member(client), await member(client)
    update = {"update": {"key": "frontend.theme", "value": "purple-intelligence"}}
    assert await ada.patch(update) == (200, {"configs": [PURPLE]})
    assert await ada.configs() == [PURPLE]
    assert await grace.configs() == [THEME]
    assert await ada.stored() == [{"kind": "choice", "value": "purple-intelligence"}]
    back = {"updates": [{"key": "frontend.theme", "value": "gruvbox-dark"}]}
    assert await ada.patch(back) == (200, {"configs": [THEME]})  # the default: no override
    assert await ada.stored() == []


@pytest.mark.parametrize(
    ("updates", "named"),
    [
        ([{"key": "frontend.colour", "value": "red"}], "unknown config key frontend.colour"),
        (
            [{"key": "frontend.theme", "value": "neon"}],
            "frontend.theme must be one of gruvbox-dark, purple-intelligence",
        ),
        (
            [{"key": "frontend.theme", "value": True}],
            "frontend.theme must be one of gruvbox-dark, purple-intelligence",
        ),
        (
            [
                {"key": "frontend.theme", "value": "purple-intelligence"},
                {"key": "nope", "value": "x"},
            ],
            "unknown config key nope",
        ),
    ],
)
async def test_a_bad_update_is_400_naming_the_key_and_changes_nothing(
    client: Client, updates: list[dict[str, Any]], named: str
) -> None:
    ada = await member(client)
    status, body = await ada.patch({"updates": updates})
    assert status == 400
    assert body == {"detail": f"invalid config update: {named}"}
    assert await ada.configs() == [THEME]
    assert await ada.stored() == []


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body"]),
        ({"updates": []}, ["body", "updates"]),
        (
            {
                "update": {"key": "frontend.theme", "value": "gruvbox-dark"},
                "updates": [{"key": "frontend.theme", "value": "gruvbox-dark"}],
            },
            ["body"],
        ),
        ({"update": {"key": "frontend.theme"}}, ["body", "update", "value"]),
        ({"update": {"key": "frontend.theme", "value": 1}}, ["body", "update", "value", "bool"]),
        ({"updates": [{"value": "x"}]}, ["body", "updates", 0, "key"]),
    ],
)
async def test_a_malformed_body_is_422_naming_the_field(
    client: Client, body: dict[str, Any], loc: list[Any]
) -> None:
    status, answer = await (await member(client)).patch(body)
    assert status == 422
    assert answer["detail"][0]["loc"] == loc


async def test_a_boolean_setting_and_several_updates_at_once(client: Client) -> None:
    await client.app[PG_POOL].execute(
        """
        INSERT INTO user_config_definitions (key, name, description, config_type, default_value,
                                             display_order)
        VALUES ('journal.compact', 'Compact journal', 'Fewer lines per message', 'boolean',
                '{"kind": "boolean", "value": false}', 20)
        ON CONFLICT (key) DO NOTHING
        """
    )
    ada = await member(client)
    assert await ada.configs() == [THEME, COMPACT]
    status, _ = await ada.patch({"update": {"key": "journal.compact", "value": "true"}})
    assert status == 400  # a string is not a boolean
    both = [
        {"key": "journal.compact", "value": True},
        {"key": "frontend.theme", "value": "purple-intelligence"},
    ]
    compact = {**COMPACT, "value": True, "using_default": False}
    assert await ada.patch({"updates": both}) == (200, {"configs": [PURPLE, compact]})
    assert await ada.configs() == [PURPLE, compact]
    assert await ada.stored() == [
        {"kind": "boolean", "value": True},
        {"kind": "choice", "value": "purple-intelligence"},
    ]
