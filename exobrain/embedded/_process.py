"""A real server binary run as a child process that cannot outlive us.

Three guarantees, whatever way the parent ends:

* clean exit, Ctrl-C or SIGTERM: :meth:`EmbeddedServer.stop` sends the server's
  own graceful-stop signal and waits;
* the parent is killed outright: on Linux the child was started with
  ``PR_SET_PDEATHSIG``, so the kernel signals it as soon as the parent dies;
* anything else (another OS, a machine crash): the next :meth:`start` finds the
  pid file left in the server's directory and ends that process first.

Children run in their own session so a terminal's Ctrl-C reaches only the
parent, which then stops them after the service has closed its connections.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psutil

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS hands out a fresh one each time)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _parent_death_signal(sig: signal.Signals) -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks the kernel to send ``sig`` when the parent dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # resolved before fork: nothing loads in the child

    def arm() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)

    return arm


class EmbeddedServerError(RuntimeError):
    """The server binary did not start; the message carries the tail of its log."""


class EmbeddedServer(ABC):
    """Base for one embedded server: its own directory, port, log and pid file."""

    #: Short name used in logs and file names.
    name: str
    #: The signal that makes this server shut down gracefully.
    stop_signal: signal.Signals = signal.SIGTERM
    host = "127.0.0.1"

    def __init__(self, root: Path, *, port: int | None = None) -> None:
        self.root = root.resolve()
        self.port = port or free_port(self.host)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.root / f"{self.name}.log"

    @property
    def _pid_path(self) -> Path:
        return self.root / f"{self.name}.pid"

    @property
    @abstractmethod
    def url(self) -> str:
        """The URL a client uses to reach this server."""

    @abstractmethod
    def command(self) -> list[str]:
        """The command line that runs the server in the foreground."""

    @abstractmethod
    def probe(self) -> bool:
        """True once the server accepts and answers clients."""

    def prepare(self) -> None:  # noqa: B027 - optional hook, most servers need nothing
        """Create on-disk state before the first start (idempotent)."""

    def run_as(self) -> str | None:
        """The system user to run as, when the server refuses to run as ours."""
        return None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 60.0) -> Self:
        self.root.mkdir(parents=True, exist_ok=True)
        self._end_leftover()
        self.prepare()
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(  # noqa: S603 - our own bundled binaries
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_parent_death_signal(self.stop_signal),  # noqa: PLW1509
                **identity(self.run_as()),
            )
        started = psutil.Process(self._process.pid).create_time()
        self._pid_path.write_text(f"{self._process.pid} {started!r}")
        deadline = time.monotonic() + timeout
        while not self.probe():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise EmbeddedServerError(f"{self.name} did not start:\n{self._log_tail()}")
            time.sleep(0.05)
        log.info("embedded %s listening at %s (data in %s)", self.name, self.url, self.root)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(self.stop_signal)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("embedded %s ignored %s; killing it", self.name, self.stop_signal.name)
                process.kill()
                process.wait()
            log.info("embedded %s stopped", self.name)
        self._pid_path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _end_leftover(self) -> None:
        """End a server that a crashed earlier run left behind in this directory.

        The pid file holds the pid and its start time, so a recycled pid that now
        belongs to an unrelated process is never signalled.
        """
        try:
            pid, started = self._pid_path.read_text().split()
            process = psutil.Process(int(pid))
            owned = process.create_time() == float(started)
        except (FileNotFoundError, ValueError, psutil.Error):
            owned = False
        if owned:
            log.warning(
                "ending embedded %s left running by an earlier run (pid %s)", self.name, pid
            )
            with contextlib.suppress(psutil.Error):
                process.send_signal(self.stop_signal)
                try:
                    process.wait(15)
                except psutil.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        self._pid_path.unlink(missing_ok=True)

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def tcp_exchange(host: str, port: int, send: bytes, expect: bytes, timeout: float = 0.5) -> bool:
    """True when a TCP peer answers ``send`` with bytes that start with ``expect``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if send:
                sock.sendall(send)
            return sock.recv(len(expect)).startswith(expect)
    except OSError:
        return False


def identity(user: str | None) -> dict[str, Any]:
    """``subprocess`` arguments that run a child as ``user`` with only that user's group.

    Keeping root's groups would be worse than useless: group bits are checked
    before "other" bits, so root's group would be denied what others may do.
    """
    if user is None:
        return {}
    import pwd  # noqa: PLC0415 - POSIX only

    gid = pwd.getpwnam(user).pw_gid
    return {"user": user, "group": gid, "extra_groups": [gid]}


def make_traversable(path: Path) -> None:
    """Let other users pass through (not list) every parent directory of ``path``."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def hand_over(path: Path, user: str) -> None:
    """Give ``user`` the directory tree at ``path`` and a way to reach it."""
    import pwd  # noqa: PLC0415 - POSIX only, and only needed when running as root

    entry = pwd.getpwnam(user)
    make_traversable(path)
    for directory, _, files in os.walk(path):
        os.chown(directory, entry.pw_uid, entry.pw_gid)
        for file in files:
            os.chown(os.path.join(directory, file), entry.pw_uid, entry.pw_gid)
