"""Handing the memory Python freed back to the system, after a burst (glibc's malloc only).

Objects over 512 bytes (answers, request bodies, buffers) live in glibc's heaps.
When they are freed glibc keeps the pages, and gives back only a free top of
the heap, which a burst of many users rarely leaves. After 50 users x 20 turns
27 of the ~60 MiB the burst added were such free pages: ``malloc_trim(0)``
releases every whole free page inside the heaps too. Every second the server
asks glibc how much its heaps hold free (``mallinfo2``, a walk of the free
lists) and trims, on a thread, once that has grown by :data:`THRESHOLD`; a
quiet process costs only the look. Elsewhere (musl, macOS) it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import sys

log = logging.getLogger(__name__)

#: How often the heaps are looked at, and how much free memory is worth a trim.
INTERVAL_SECONDS = 1.0
THRESHOLD = 8 << 20


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    if not (hasattr(libc, "mallinfo2") and hasattr(libc, "malloc_trim")):  # glibc >= 2.33
        return None
    libc.mallinfo2.restype = _MallInfo2
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return libc


_LIBC = _glibc()


def free_heap_bytes() -> int | None:
    """Bytes glibc's heaps hold free (all arenas); None without glibc."""
    if _LIBC is None:
        return None
    info: _MallInfo2 = _LIBC.mallinfo2()
    return int(info.fordblks)


class HeapTrimmer:
    """Trims once :data:`THRESHOLD` more bytes are free than after the last trim.

    A trim leaves glibc's count of free bytes as it was (the chunks stay free,
    their pages go), so the count itself cannot say whether trimming again would
    give anything back: the growth since the last trim (or since the lowest
    count seen after it, as freed memory is reused) does.
    """

    def __init__(self, threshold: int = THRESHOLD) -> None:
        self._threshold = threshold
        self._baseline = 0

    def __call__(self) -> bool:
        """Trim if worth it; whether it did. Blocking (it takes each arena's lock in turn):
        call it off the event loop."""
        free = free_heap_bytes()
        if _LIBC is None or free is None:
            return False
        self._baseline = min(self._baseline, free)
        if free - self._baseline <= self._threshold:
            return False
        _LIBC.malloc_trim(0)
        self._baseline = free
        return True


async def trim_heap_after_bursts() -> None:
    """Until cancelled: a :class:`HeapTrimmer` every :data:`INTERVAL_SECONDS`."""
    if _LIBC is None:
        log.debug("not glibc: freed heap stays with the process")
        return
    trim = HeapTrimmer()
    while True:
        await asyncio.sleep(INTERVAL_SECONDS)
        await asyncio.to_thread(trim)
