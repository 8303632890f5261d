"""Handing the memory Python freed back to the system, after a burst (glibc's malloc only).

Objects over 512 bytes (answers, request bodies, buffers) live in glibc's heaps.
When they are freed glibc keeps the pages, and gives back only a free top of
the heap, which a burst of many users rarely leaves. After 50 users x 20 turns
27 of the ~60 MiB the burst added were such free pages: ``malloc_trim(0)``
releases every whole free page inside the heaps too.

When to trim: ``mallinfo2`` could tell how much is free, but it walks every
free chunk holding each arena's lock (tens of ms on a fragmented heap), as
``malloc_trim`` does. The process's resident size (``/proc/self/statm``, a
few µs) is looked at every second instead: a trim is due when the process has
grown :data:`THRESHOLD` since the last one (a burst that goes on), or has
grown at all (past :data:`SETTLE_GROWTH`) and then held still for
:data:`SETTLE_SECONDS` (a burst that ended: what it freed shows in no size).
A process whose size holds steady is not trimmed again. Elsewhere (musl,
macOS) nothing is done.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import sys
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: How often the size is looked at, and how much growth since the last trim is worth one.
INTERVAL_SECONDS = 1.0
THRESHOLD = 8 << 20
#: Less growth is worth a trim too, once the size has held still this long.
SETTLE_GROWTH = 1 << 20
SETTLE_SECONDS = 2.0


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "malloc_trim"):  # another C library under that name
        return None
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


_LIBC = _glibc()
_PAGE = os.sysconf("SC_PAGE_SIZE")


def can_trim_heap() -> bool:
    """Whether this process's malloc is glibc's, which :class:`HeapTrimmer` can trim."""
    return _LIBC is not None


def resident_bytes() -> int:
    """This process's resident set size."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE


class HeapTrimmer:
    """Says when a trim is due (see the module) and trims. ``clock``: for tests."""

    def __init__(
        self, threshold: int = THRESHOLD, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._threshold = threshold
        self._clock = clock
        self._baseline = self._grown_to = resident_bytes()
        self._grew_at = clock()

    def due(self) -> bool:
        """Whether a trim is due now; cheap, fit for the event loop."""
        if _LIBC is None:
            return False
        size, now = resident_bytes(), self._clock()
        if size > self._grown_to + SETTLE_GROWTH:  # still growing (a page now and then is not)
            self._grew_at, self._grown_to = now, size
        self._baseline = min(self._baseline, size)  # given back by other means counts too
        grown = size - self._baseline
        settled = grown > SETTLE_GROWTH and now - self._grew_at >= SETTLE_SECONDS
        return grown > self._threshold or settled

    def __call__(self) -> None:
        """Trim now. Blocking (it takes each arena's lock in turn): call it off the loop."""
        if _LIBC is not None:
            _LIBC.malloc_trim(0)
        self._baseline = self._grown_to = resident_bytes()


async def trim_heap_after_bursts() -> None:
    """Until cancelled: look every :data:`INTERVAL_SECONDS`, trim on a thread when due."""
    if _LIBC is None:
        log.debug("not glibc: freed heap stays with the process")
        return
    trim = HeapTrimmer()
    while True:
        await asyncio.sleep(INTERVAL_SECONDS)
        if trim.due():
            await asyncio.to_thread(trim)
