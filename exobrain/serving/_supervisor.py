"""N copies of ``exobrain serve`` on one port, kept running by one parent process.

Each worker is ``python -m exobrain serve --workers 1`` started with
``subprocess.Popen`` (fork and exec at once), never a bare fork: the parent may
hold threads (uvloop's resolver pool and the embedded servers under ``dev``),
whose locks a forked child would inherit half-taken. A fresh interpreter
inherits only its environment and one pipe, and is exactly the command a user
runs, exit codes and signal handling included (``multiprocessing``'s spawn would
add pickling and lose ``preexec_fn``, which arms ``PR_SET_PDEATHSIG``).

* **One port.** Workers listen with ``SO_REUSEPORT`` and the kernel spreads new
  connections over them. For ``HTTP_PORT=0`` the parent picks the port.
* **Readiness.** Each worker writes its URLs on a pipe of its own once it
  listens: exact per worker, which probing a balanced port could not be. The
  parent prints ``exobrain is serving at ...`` once every worker has.
* **Restarts.** A worker that ends is restarted after 0.5 s, doubling up to
  10 s, back to 0.5 s once a worker ran for 60 s. Exit code 2 (a configuration
  error) or N workers in a row ending before they listened stop everything:
  restarting cannot fix either.
* **Shutdown.** SIGINT or SIGTERM: SIGTERM to every worker, SIGKILL to those
  still running ``ACTOR_SHUTDOWN_TIMEOUT_SECONDS`` + 15 s later. If the parent is
  killed outright, the kernel sends each worker SIGTERM (Linux
  ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping

from exobrain.config import Settings
from exobrain.embedded._process import _parent_death_signal

from ._worker import REPORT_FD, WORKER_INDEX

log = logging.getLogger(__name__)

_COMMAND = (sys.executable, "-m", "exobrain", "serve", "--workers", "1")
_FIRST_DELAY, _MAX_DELAY = 0.5, 10.0
#: A worker that ran this long is healthy: its successor starts after the first delay again.
_STABLE_AFTER = 60.0
#: Beyond ACTOR_SHUTDOWN_TIMEOUT_SECONDS: closing connections and servers after the actors.
_SHUTDOWN_MARGIN = 15.0
_CONFIGURATION_ERROR = 2


def supervise(
    settings: Settings,
    workers: int,
    *,
    banner: str = "",
    environment: Mapping[str, str] | None = None,
) -> int:
    """Serve with ``workers`` processes until SIGINT or SIGTERM; return the exit code.

    ``environment`` is added to ours for the workers (``dev`` passes its
    embedded servers' URLs). The exit code is 0 after a signal, 2 when a worker
    found a configuration error, 1 when workers could not start.
    """
    with _port(settings) as port:
        log.info("starting %d workers on %s:%d", workers, settings.http_host, port)
        pool = _Pool(
            workers,
            {
                **os.environ,
                **(environment or {}),
                "HTTP_HOST": settings.http_host,
                "HTTP_PORT": str(port),
            },
            banner=banner,
            shutdown_timeout=settings.actor_shutdown_timeout_seconds + _SHUTDOWN_MARGIN,
        )
        return asyncio.run(pool.run())


@contextlib.contextmanager
def _port(settings: Settings) -> Iterator[int]:
    """``HTTP_PORT``; when it is 0, a free port held for the workers while we run.

    The holding socket has ``SO_REUSEPORT`` and never listens: workers bind
    beside it and the kernel gives it no connection, while no other program can
    take the port, not even while every worker restarts.
    """
    if settings.http_port != 0:
        yield settings.http_port
        return
    family, kind, proto, _, address = socket.getaddrinfo(
        settings.http_host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(address)
        yield holder.getsockname()[1]


class _Worker:
    """One worker process and the pipe it reports on."""

    def __init__(
        self,
        index: int,
        process: subprocess.Popen[bytes],
        report: int,
        on_listening: Callable[[_Worker, list[str]], None],
    ) -> None:
        self.index = index
        self.process = process
        self.started = time.monotonic()
        self.listened = False
        loop = asyncio.get_running_loop()
        self.exited: asyncio.Future[int] = loop.create_future()
        self._report: int | None = report
        self._received = b""
        self._on_listening = on_listening
        os.set_blocking(report, False)
        loop.add_reader(report, self.read_report)

    def read_report(self) -> None:
        """Take what the worker wrote; a closed pipe means it listens, or never will."""
        if self._report is None:
            return
        try:
            while chunk := os.read(self._report, 4096):
                self._received += chunk
        except BlockingIOError:
            return
        self._close_report()

    def ended(self, code: int) -> None:
        self.read_report()
        if self._report is not None:  # a descendant inherited the pipe: stop waiting for it
            self._close_report()
        self.exited.set_result(code)

    def _close_report(self) -> None:
        assert self._report is not None
        asyncio.get_running_loop().remove_reader(self._report)
        os.close(self._report)
        self._report = None
        if self._received:
            self.listened = True
            self._on_listening(self, self._received.decode().split("\n"))


class _Pool:
    """The workers, their restarts and the pool's end, on one event loop."""

    def __init__(
        self, size: int, environment: dict[str, str], *, banner: str, shutdown_timeout: float
    ) -> None:
        self._size = size
        self._environment = environment
        self._banner = banner
        self._shutdown_timeout = shutdown_timeout
        self._live: dict[int, _Worker] = {}
        self._up: set[int] = set()  # indexes that listened at least once
        self._failed_starts = 0  # workers in a row that ended before they listened
        self._done = asyncio.Event()
        self._exit_code = 0

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGCHLD, self._reap)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._finish, 0)
        slots = [asyncio.create_task(self._keep_running(index)) for index in range(self._size)]
        for slot in slots:
            slot.add_done_callback(self._slot_ended)
        await self._done.wait()
        for slot in slots:
            slot.cancel()
        await asyncio.wait(slots)
        await self._stop_workers()
        return self._exit_code

    def _finish(self, exit_code: int) -> None:
        if not self._done.is_set():
            self._exit_code = exit_code
            self._done.set()

    async def _keep_running(self, index: int) -> None:
        """Run worker ``index``, and again whenever it ends, until the pool stops."""
        delay = _FIRST_DELAY
        while True:
            worker = self._spawn(index)
            code = await asyncio.shield(worker.exited)  # the pool's stop waits for it too
            if code == _CONFIGURATION_ERROR:
                log.error("worker %d exited with code 2, a configuration error: stopping", index)
                self._finish(_CONFIGURATION_ERROR)
                return
            if not worker.listened:
                self._failed_starts += 1
                if self._failed_starts >= self._size:
                    log.error(
                        "%d workers in a row ended before listening, the last with %s: stopping",
                        self._failed_starts,
                        _exit_status(code),
                    )
                    self._finish(1)
                    return
            if time.monotonic() - worker.started >= _STABLE_AFTER:
                delay = _FIRST_DELAY
            log.warning(
                "worker %d (pid %d) ended%s with %s; restarting it in %gs",
                index,
                worker.process.pid,
                "" if worker.listened else " before listening",
                _exit_status(code),
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)

    def _slot_ended(self, slot: asyncio.Task[None]) -> None:
        """A slot that failed (it could not start a process) stops the pool, never silently."""
        if not slot.cancelled() and (error := slot.exception()) is not None:
            log.error("supervising a worker failed: %s", error, exc_info=error)
            self._finish(1)

    def _spawn(self, index: int) -> _Worker:
        report, report_end = os.pipe()
        try:
            process = subprocess.Popen(  # noqa: S603 - our own command line
                _COMMAND,
                env=self._environment | {WORKER_INDEX: str(index), REPORT_FD: str(report_end)},
                stdin=subprocess.DEVNULL,
                pass_fds=(report_end,),
                start_new_session=True,  # a terminal's Ctrl-C reaches only us; we stop them
                preexec_fn=_parent_death_signal(signal.SIGTERM),  # noqa: PLW1509 - prctl only
            )
        except BaseException:
            os.close(report)
            raise
        finally:
            os.close(report_end)
        log.info("worker %d started (pid %d)", index, process.pid)
        worker = _Worker(index, process, report, self._listening)
        self._live[index] = worker
        return worker

    def _listening(self, worker: _Worker, urls: list[str]) -> None:
        self._failed_starts = 0
        if worker.index in self._up:
            log.info("worker %d (pid %d) is listening again", worker.index, worker.process.pid)
            return
        self._up.add(worker.index)
        if len(self._up) == self._size:
            for url in urls:
                print(f"exobrain is serving at {url}", flush=True)
            if self._banner:
                print(self._banner, flush=True)
            log.info("%d workers serving at %s", self._size, " ".join(urls))

    def _reap(self) -> None:
        """SIGCHLD: collect every worker that exited (signals merge: one may stand for many)."""
        for worker in list(self._live.values()):
            if (code := worker.process.poll()) is not None:
                del self._live[worker.index]
                worker.ended(code)

    async def _stop_workers(self) -> None:
        workers = list(self._live.values())
        if not workers:
            return
        log.info("stopping %d workers", len(workers))
        for worker in workers:
            worker.process.send_signal(signal.SIGTERM)
        _, running = await asyncio.wait(
            [worker.exited for worker in workers], timeout=self._shutdown_timeout
        )
        if running:
            for worker in self._live.values():
                log.warning(
                    "worker %d (pid %d) still running after %gs: killing it",
                    worker.index,
                    worker.process.pid,
                    self._shutdown_timeout,
                )
                worker.process.kill()
            await asyncio.wait(running)
        log.info("every worker stopped")


def _exit_status(code: int) -> str:
    """``exit code 1``, or ``exit code -9 (SIGKILL)`` for a process a signal ended."""
    if code >= 0:
        return f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"exit code {code} ({name})"
