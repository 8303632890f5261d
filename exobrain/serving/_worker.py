"""A worker's side of the supervisor: which worker this process is, and its report.

The supervisor hands each worker two environment variables. Settings cannot
carry them (they are the supervisor's business, not configuration), so they
are read here:

* ``EXOBRAIN_WORKER_INDEX``: the worker's index, 0 to N-1, stable across its
  restarts. Code that must run once per machine (Qdrant's local mode) keys on
  :func:`worker_index`.
* ``EXOBRAIN_WORKER_REPORT_FD``: the write end of a pipe. Once it listens, the
  worker writes its URLs there and closes it; a pipe closed empty means the
  worker ended before it listened.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

WORKER_INDEX = "EXOBRAIN_WORKER_INDEX"
REPORT_FD = "EXOBRAIN_WORKER_REPORT_FD"


def worker_index() -> int | None:
    """This process's index among the supervisor's workers; None when not run by one."""
    value = os.environ.get(WORKER_INDEX)
    return None if value is None else int(value)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, as a container limits it)."""
    if not sys.platform.startswith("linux"):
        return os.cpu_count() or 1
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class Worker:
    """This process as one of the supervisor's workers."""

    index: int
    report_fd: int

    def report_listening(self, urls: Sequence[str]) -> None:
        """Tell the supervisor this worker accepts connections at ``urls`` (called once).

        One write below ``PIPE_BUF`` is atomic: the supervisor reads all or nothing.
        """
        try:
            os.write(self.report_fd, "\n".join(urls).encode())
        finally:
            os.close(self.report_fd)


def this_worker() -> Worker | None:
    """The supervisor's worker this process is, or None when it serves on its own."""
    index, report_fd = worker_index(), os.environ.get(REPORT_FD)
    if index is None or report_fd is None:
        return None
    return Worker(index, int(report_fd))
