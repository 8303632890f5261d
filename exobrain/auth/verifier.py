"""Password checks off the event loop, on a thread pool of their own.

hashlib's scrypt releases the GIL, so the loop keeps running while a check
does. A pool of its own keeps a burst of logins from filling the loop's default
executor (which ``asyncio.to_thread`` and DNS lookups share), and its size
leaves a core to the loop: on two cores, measured, one scrypt thread leaves
the loop thread's speed untouched while two halve it. Logins beyond the pool
wait in its queue; the login throttle bounds how many one client can queue.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor

from .passwords import unmatchable_hash, verify_password


def default_workers() -> int:
    """Every core but one, and at least one."""
    return max(1, (os.cpu_count() or 2) - 1)


class PasswordVerifier:
    def __init__(self, workers: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="password")
        self._unmatchable = unmatchable_hash()

    async def verify(self, password: str, encoded: str | None) -> bool:
        """Check ``password`` against ``encoded``; with no hash (unknown account) the check
        still runs, against a hash nothing matches, so it takes as long as a wrong password."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, verify_password, password, encoded or self._unmatchable
        )

    def close(self) -> None:
        """Refuse new checks and drop queued ones; running ones finish on their threads."""
        self._executor.shutdown(wait=False, cancel_futures=True)
