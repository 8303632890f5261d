"""Helpers for the knowledge-job tests: a signed-in user who writes, updates and watches jobs."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient
from auth_support import create_account, login_tokens

from exobrain.actors.journal import AppendMessages, NewMessage, append
from exobrain.http.actors import JOURNAL

Client = TestClient[web.Request, web.Application]
Event = tuple[str, dict[str, Any]]


class Writer:
    """A signed-in user on an app, writing to its journals through the JournalActor."""

    def __init__(self, client: Client, headers: dict[str, str], user_id: uuid.UUID) -> None:
        self.client, self.headers, self.user_id = client, headers, user_id

    async def write(self, reference: str, *contents: str) -> None:
        messages = tuple(NewMessage("user", content) for content in contents)
        command = AppendMessages(self.user_id, reference, messages)
        await append(self.client.app[JOURNAL], command, timeout=10)


class User(Writer):
    async def update(self) -> list[str]:
        """Ask for an update: the job ids."""
        response = await self.client.post("/api/knowledge/update", json={}, headers=self.headers)
        body = await response.json()
        assert response.status == 200, body
        return [str(job_id) for job_id in body["job_ids"]]

    async def job(self) -> str:
        """Write a message and ask for an update: the one job's id."""
        await self.write("2026/12/01", "tomatoes")
        [job_id] = await self.update()
        return job_id

    async def state(self, job_id: str) -> tuple[int, dict[str, Any]]:
        response = await self.client.get(f"/api/knowledge/update/{job_id}", headers=self.headers)
        return response.status, await response.json()

    async def watch(self, job_id: str) -> AsyncIterator[Event]:
        """The watch's events as they come, until the stream ends."""
        url = f"/api/knowledge/update/{job_id}/watch"
        async with self.client.get(url, headers=self.headers) as response:
            assert response.status == 200, await response.text()
            assert response.content_type == "text/event-stream"
            name, data = "", b""
            async for line in response.content:
                if line.startswith(b"event: "):
                    name = line[7:].strip().decode()
                elif line.startswith(b"data: "):
                    data = line[6:].strip()
                elif line == b"\n" and name:
                    yield name, orjson.loads(data)
                    name = ""


async def sign_in(client: Client) -> User:
    account = await create_account(client)
    tokens = await login_tokens(client, account)
    return User(client, {"Authorization": f"Bearer {tokens['access_token']}"}, account.user_id)


async def collect(events: AsyncIterator[Event]) -> list[Event]:
    return [event async for event in events]
