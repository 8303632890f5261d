"""Freed heap handed back to the system after a burst (glibc only).

Each check runs in a fresh interpreter, so that no other test's threads or
allocations move the process's RSS while it is read.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from exobrain.serving import free_heap_bytes

pytestmark = pytest.mark.skipif(free_heap_bytes() is None, reason="glibc's malloc only")

#: 64 MiB of 1 KiB strings (past pymalloc's 512 bytes: glibc's heap), all freed but the
#: last, which pins the top of the heap as a burst's survivors do: glibc alone keeps it all.
_BURST = """
import json, re
from exobrain.serving import HeapTrimmer, free_heap_bytes

def rss():
    return int(re.search(r"VmRSS:\\s+(\\d+)", open("/proc/self/status").read())[1]) * 1024

trim = HeapTrimmer(threshold=16 << 20)
quiet = trim()
burst = [b"x" * 1024 + bytes([i % 256]) for i in range(65536)]
survivor = burst.pop()
before, free = rss(), free_heap_bytes()
del burst
freed = rss()
trimmed = trim()
after = rss()
print(json.dumps({
    "quiet": quiet, "free": free_heap_bytes() - free, "kept": before - freed,
    "trimmed": trimmed, "returned": freed - after, "again": trim(),
}))
"""


def test_a_burst_freed_is_given_back_once() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _BURST], capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(done.stdout)
    assert seen["quiet"] is False  # nothing freed since start: no trim
    assert seen["free"] > 60 << 20  # glibc counts the burst free...
    assert seen["kept"] < 8 << 20  # ...but kept its pages
    assert seen["trimmed"] is True
    assert seen["returned"] > 56 << 20
    assert seen["again"] is False  # nothing more freed since: no second trim
