"""Helpers for the journal API tests: signed-in users and writes through the real JournalActor."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from auth_support import AiohttpClient, Client, create_account, login_tokens, start

from exobrain.actors.journal import AppendMessages, NewMessage, NewToolCall, StoredMessage, append
from exobrain.config import Settings
from exobrain.http.actors import JOURNAL

REFERENCE = "2025/01/14"


@dataclass(frozen=True, slots=True)
class Reader:
    """A signed-in user of one test app."""

    client: Client
    user_id: uuid.UUID
    token: str

    async def get(self, path: str, **params: Any) -> aiohttp.ClientResponse:
        return await self.client.get(
            path,
            params={name: str(value) for name, value in params.items()},
            headers={"Authorization": f"Bearer {self.token}"},
        )

    async def json(self, path: str, **params: Any) -> Any:
        response = await self.get(path, **params)
        assert response.status == 200, await response.text()
        return await response.json()

    async def write(self, reference: str, *messages: NewMessage | str) -> tuple[StoredMessage, ...]:
        """Append through the JournalActor; returns once committed (and announced)."""
        command = AppendMessages(
            self.user_id,
            reference,
            tuple(NewMessage("user", m) if isinstance(m, str) else m for m in messages),
        )
        return await append(self.client.app[JOURNAL], command, timeout=10)


async def start_journal(
    aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings], **overrides: Any
) -> Client:
    return await start(aiohttp_client, make_settings, **overrides)


async def reader(client: Client) -> Reader:
    account = await create_account(client)
    tokens = await login_tokens(client, account)
    return Reader(client, account.user_id, tokens["access_token"])


def answer(content: str, *calls: NewToolCall) -> NewMessage:
    return NewMessage("assistant", content, metadata={"model": "agent"}, tool_calls=calls)
