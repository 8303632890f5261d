"""What waits unsent on a chat socket's connection, and whether its peer takes any of it.

A socket's sends wait only while more than the high-water mark is unsent
(``ChatSocket._room``); below it they return at once. A peer that stops
reading with less than that unsent, and then sends nothing to be answered,
would leave its backlog waiting unnoticed until the heartbeat gave up on it.
So each backlog is watched on its own: a peer that takes none of it within
the write timeout is too slow, whether or not anything more is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class Backlog:
    """Watches one connection's unsent bytes; ``too_slow`` is called once its peer took
    none of them for ``timeout`` seconds.

    Every write of the socket is reported with what waited just before it, so
    any shrinking of the buffer is the peer taking bytes, never hidden by a
    write appending more (aiohttp's heartbeat pings, two bytes each, are the
    only writes that pass outside).
    """

    def __init__(self, timeout: float, too_slow: Callable[[], object]) -> None:
        self._timeout, self._too_slow = timeout, too_slow
        self._transport: asyncio.Transport | None = None
        self._unsent = 0  # what waited after the last write or look
        self._taken = False  # whether the peer took some since the watch started
        self._watch: asyncio.TimerHandle | None = None

    def wrote(self, transport: asyncio.Transport, unsent_before: int) -> None:
        """A write to ``transport`` is done; ``unsent_before`` waited just before it."""
        self._transport = transport
        self._taken |= unsent_before < self._unsent
        self._unsent = transport.get_write_buffer_size()
        if self._unsent and self._watch is None:
            self._taken = False
            self._watch = asyncio.get_running_loop().call_later(self._timeout, self._look)

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _look(self) -> None:
        self._watch = None
        assert self._transport is not None  # armed by a write
        unsent = self._transport.get_write_buffer_size()
        if unsent and not self._taken and unsent >= self._unsent:
            self._too_slow()
        elif unsent:  # the peer keeps taking: watch what waits now
            self.wrote(self._transport, unsent)
