"""``exobrain serve --workers N``: N worker processes on one port, supervised by their parent.

A worker is today's single-process server in a process of its own, a full
member on its own (event loop, actors, connections); the kernel spreads
connections over them (``SO_REUSEPORT``). :func:`supervise` is the parent's
side, :func:`this_worker` and :func:`worker_index` the worker's.
"""

from ._heap import HeapTrimmer, can_trim_heap, resident_bytes, trim_heap_after_bursts
from ._supervisor import supervise
from ._worker import Worker, this_worker, usable_cores, worker_index

__all__ = [
    "HeapTrimmer",
    "Worker",
    "can_trim_heap",
    "resident_bytes",
    "supervise",
    "this_worker",
    "trim_heap_after_bursts",
    "usable_cores",
    "worker_index",
]
