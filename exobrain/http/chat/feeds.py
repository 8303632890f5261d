"""Turns owned by other instances, for this instance's sockets: the chat log, live.

For each user with a socket here, one core NATS subscription follows the
user's log subjects. A turn that another instance starts reaches every
socket of the user here as ``stream.started`` and then, in order, each event
of it: the owner writes a stream's entries one message at a time, in order,
on one connection. What this instance wrote itself is skipped, since its own
sessions push to its sockets directly. A socket that attached mid-turn
follows such a turn only after ``stream.resume`` (replayed from the log).
"""

from __future__ import annotations

import contextlib
import uuid
from collections import defaultdict

import nats.errors
from nats.aio.subscription import Subscription as NatsSubscription

from exobrain.actors.session import ActiveStream, Item, StreamEvent, StreamStarted, Subscription
from exobrain.cluster import ChatLog, Logged


class _Feed:
    def __init__(self) -> None:
        #: Each socket's inbox, with the streams it follows from here.
        self.sinks: dict[Subscription, set[uuid.UUID]] = {}
        self.subscription: NatsSubscription | None = None


class Feeds:
    def __init__(self, chat_log: ChatLog) -> None:
        self._log = chat_log
        self._feeds: dict[uuid.UUID, _Feed] = {}

    async def attach(self, user_id: uuid.UUID, sink: Subscription, *, owned_here: bool) -> None:
        """Follow the user's turns owned elsewhere into ``sink``; announce those under way."""
        feed = self._feeds.get(user_id)
        if feed is None:
            feed = self._feeds[user_id] = _Feed()

            async def deliver(logged: Logged) -> None:
                self._deliver(feed, logged)

            try:
                feed.subscription = await self._log.watch(user_id, deliver)
            except BaseException:
                del self._feeds[user_id]
                raise
        feed.sinks[sink] = set()
        if not owned_here:
            announced = [
                ActiveStream(last.stream_id, last.last_seq)
                for last in await self._log.unfinished(user_id)
            ]
            sink.push(announced)

    async def detach(self, user_id: uuid.UUID, sink: Subscription) -> None:
        feed = self._feeds.get(user_id)
        if feed is None:
            return
        feed.sinks.pop(sink, None)
        if not feed.sinks:
            del self._feeds[user_id]
            if feed.subscription is not None:
                with contextlib.suppress(nats.errors.Error):  # a closed connection has none
                    await feed.subscription.unsubscribe()

    def _deliver(self, feed: _Feed, logged: Logged) -> None:
        pushes: dict[Subscription, list[Item]] = defaultdict(list)
        for entry in logged.entries:
            if isinstance(entry, StreamStarted):
                for sink, following in feed.sinks.items():
                    following.add(entry.stream_id)
                    pushes[sink].append(entry)
            elif isinstance(entry, StreamEvent):
                for sink, following in feed.sinks.items():
                    if entry.stream_id in following:
                        pushes[sink].append(entry)
                        if entry.name == "done":
                            following.discard(entry.stream_id)
        for sink, items in pushes.items():
            sink.push(items)
