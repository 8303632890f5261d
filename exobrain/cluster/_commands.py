"""Commands between instances: NATS request/reply on ``<prefix>.cmd.<instance>``.

An instance that gets a request for a user owned elsewhere sends the command
to the owner's subject and waits for its reply. No responders means the owner
is gone (its lease will lapse); the caller decides what to do about it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats.errors
import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

log = logging.getLogger(__name__)

#: Answers one command (a JSON object) with a JSON object.
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class OwnerUnreachable(Exception):
    """The owner did not answer: it died or is partitioned away."""


class Commands:
    def __init__(self, client: NatsClient, *, subject_prefix: str, instance_id: str) -> None:
        self._nats = client
        self._prefix = f"{subject_prefix}.cmd"
        self.instance_id = instance_id
        self._subscription: Subscription | None = None
        #: Called once per forwarded command (for metrics).
        self.on_forward: Callable[[str], None] = lambda op: None

    async def serve(self, handler: Handler) -> None:
        async def answer(msg: Msg) -> None:
            try:
                reply = await handler(orjson.loads(msg.data))
            except Exception:  # a bug here must not leave the caller waiting for nothing
                log.exception("forwarded command failed")
                reply = {"refused": {"status": 500, "code": "internal", "message": "failed"}}
            try:
                await msg.respond(orjson.dumps(reply))
            except nats.errors.Error as exc:
                log.warning("could not answer a forwarded command: %r", exc)

        self._subscription = await self._nats.subscribe(
            f"{self._prefix}.{self.instance_id}", cb=answer
        )

    async def request(
        self, instance_id: str, command: dict[str, Any], *, timeout: float
    ) -> dict[str, Any]:
        self.on_forward(str(command.get("op")))
        try:
            msg = await self._nats.request(
                f"{self._prefix}.{instance_id}", orjson.dumps(command), timeout=timeout
            )
        except (nats.errors.NoRespondersError, nats.errors.TimeoutError) as exc:
            raise OwnerUnreachable(instance_id) from exc
        reply: dict[str, Any] = orjson.loads(msg.data)
        return reply

    async def close(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()
