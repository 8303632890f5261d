"""Freed heap handed back to the system after a burst (glibc only).

Each check runs in a fresh interpreter, so that no other test's threads or
allocations move the process's RSS while it is read.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from exobrain.serving import can_trim_heap

pytestmark = pytest.mark.skipif(not can_trim_heap(), reason="glibc's malloc only")

#: 64 MiB of 1 KiB strings (past pymalloc's 512 bytes: glibc's heap), all freed but the
#: last, which pins the top of the heap as a burst's survivors do: glibc alone keeps it all.
_BURST = """
import json
from exobrain.serving import HeapTrimmer, resident_bytes

trim = HeapTrimmer(threshold=16 << 20)
quiet = trim.due()
burst = [b"x" * 1024 + bytes([i % 256]) for i in range(65536)]
survivor = burst.pop()
before = resident_bytes()
del burst
freed = resident_bytes()
due = trim.due()
trim()
after = resident_bytes()
print(json.dumps({
    "quiet": quiet, "kept": before - freed, "due": due, "returned": freed - after,
    "again": trim.due(),
}))
"""


def test_a_burst_freed_is_given_back_once() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _BURST], capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(done.stdout)
    assert seen["quiet"] is False  # not grown since start: no trim
    assert seen["kept"] < 8 << 20  # glibc kept the freed burst's pages...
    assert seen["due"] is True  # ...so the process is 64 MiB larger than at start
    assert seen["returned"] > 56 << 20  # which the trim gives back
    assert seen["again"] is False  # and it is not due again until the process grows again


#: 16 MiB freed, below the threshold: due only once the size has held still for a while
#: (a few pages more meanwhile, as timers and heartbeats take, do not count as growing).
_SETTLING = """
import json
from exobrain.serving import HeapTrimmer, resident_bytes

now, creep = [0.0], []
trim = HeapTrimmer(threshold=1 << 30, clock=lambda: now[0])
burst = [b"x" * 1024 + bytes([i % 256]) for i in range(16384)]
survivor = burst.pop()
del burst
growing = trim.due()
now[0] += 1.0
creep.append(b"y" * 100_000)
soon = trim.due()
now[0] += 1.0
creep.append(b"z" * 100_000)
settled = trim.due()
freed = resident_bytes()
trim()
print(json.dumps({
    "growing": growing, "soon": soon, "settled": settled,
    "returned": freed - resident_bytes(), "again": trim.due(),
}))
"""


def test_a_smaller_burst_is_given_back_once_the_size_holds_still() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SETTLING], capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(done.stdout)
    assert (seen["growing"], seen["soon"], seen["settled"]) == (False, False, True)
    assert seen["returned"] > 12 << 20
    assert seen["again"] is False
