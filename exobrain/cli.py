"""The ``exobrain`` command: serve, dev, orchestrator, worker, migrate and seed."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import gc
import logging
import resource
import signal
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
import uvloop
from aiohttp import web

from .config import ConfigurationError, Settings, configure_logging, load_settings
from .embedded import EmbeddedServerError, embedded_stack
from .serving import Worker, supervise, this_worker, trim_heap_after_bursts, usable_cores
from .store import migrate
from .store.seed import SEED_PASSWORD, SEED_USERS, seed

log = logging.getLogger("exobrain")

T = TypeVar("T")

#: Open files the server asks for (sockets included), within the hard limit.
_MAX_OPEN_FILES = 65_536

_INFRASTRUCTURE = ("assistant_db_dsn", "assistant_cache_redis_url", "exobrain_nats_url")


@dataclass(frozen=True)
class Options:
    """The command line beyond the command's name."""

    #: Processes serving on the one port (``serve`` and ``dev`` only; 1: no supervisor).
    workers: int


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exobrain", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        subparser = commands.add_parser(name, help=help_text, description=help_text)
        if name in WORKERS_DEFAULT:
            subparser.add_argument(
                "--workers",
                type=_worker_count,
                default=WORKERS_DEFAULT[name](),
                metavar="N",
                help="worker processes sharing the port (default: %(default)s)",
            )
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        for problem in exc.problems:
            print(f"configuration error: {problem}", file=sys.stderr)
        return 2
    configure_logging(settings)
    command, _ = COMMANDS[args.command]
    try:
        return command(settings, Options(workers=getattr(args, "workers", 1)))
    except (EmbeddedServerError, OSError, RuntimeError, asyncpg.PostgresError) as exc:
        log.error("%s failed: %s", args.command, exc)
        return 1


def _worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 up (got {text!r})")
    return count


def _lacks(settings: Settings, names: tuple[str, ...], command: str, hint: str = "") -> bool:
    """Print one line per unset setting ``command`` requires; True if any was unset."""
    missing = [name.upper() for name in names if getattr(settings, name) is None]
    for name in missing:
        print(
            f"configuration error: {name}: required by `exobrain {command}`{hint}", file=sys.stderr
        )
    return bool(missing)


def serve(settings: Settings, options: Options) -> int:
    if _lacks(
        settings, _INFRASTRUCTURE, "serve", " (`exobrain dev` starts embedded servers instead)"
    ):
        return 2
    if options.workers > 1:
        return supervise(settings, options.workers)
    return _run(_serve_http(settings, banner="", worker=this_worker()))


#: What ``dev`` turns on unless set: a model, an orchestrator and a worker of its own, and a
#: mock that streams at a pace a person reads, so that streaming and cancel can be seen.
_DEV_DEFAULTS: dict[str, object] = {
    "main_agent_use_mock": True,
    "main_agent_mock_words_per_second": 40.0,
    "job_orchestrator_in_process": True,
    "job_worker_in_process": True,
}


def dev(settings: Settings, options: Options) -> int:
    unset = {k: v for k, v in _DEV_DEFAULTS.items() if k not in settings.model_fields_set}
    settings = settings.model_copy(update=unset)
    with embedded_stack(settings) as settings:
        _run(_prepare_database(str(settings.assistant_db_dsn)))
        emails = " or ".join(email for email, _ in SEED_USERS)
        banner = (
            f"log in as {emails} with password {SEED_PASSWORD}; "
            f"state in {settings.exobrain_state_dir}"
        )
        if options.workers > 1:
            environment = _dev_environment(settings)
            return supervise(settings, options.workers, banner=banner, environment=environment)
        return _run(_serve_http(settings, banner=banner))


def _dev_environment(settings: Settings) -> dict[str, str]:
    """What ``dev`` decided, as the variables its workers (plain ``serve``) read."""
    environment = {name.upper(): str(getattr(settings, name)) for name in _INFRASTRUCTURE}
    for name in _DEV_DEFAULTS:
        environment[name.upper()] = str(getattr(settings, name)).lower()
    return environment


def orchestrator_command(settings: Settings, _options: Options) -> int:
    if _lacks(settings, ("exobrain_nats_url",), "orchestrator"):
        return 2
    from .orchestrator import serve as serve_orchestrator  # noqa: PLC0415 - keeps others light

    return _run(serve_orchestrator(settings))


def worker_command(settings: Settings, _options: Options) -> int:
    if _lacks(settings, ("assistant_db_dsn", "exobrain_nats_url"), "worker"):
        return 2
    from .worker import serve as serve_worker  # noqa: PLC0415 - keeps others light

    return _run(serve_worker(settings))


def migrate_command(settings: Settings, _options: Options) -> int:
    dsn = _required_dsn(settings)
    applied = _run(migrate(dsn))
    print(f"applied {len(applied)} migration(s)" if applied else "schema is up to date")
    return 0


def seed_command(settings: Settings, _options: Options) -> int:
    _run(_prepare_database(_required_dsn(settings)))
    print("seed data is in place")
    return 0


def _required_dsn(settings: Settings) -> str:
    if settings.assistant_db_dsn is None:
        raise RuntimeError("ASSISTANT_DB_DSN is not set")
    return str(settings.assistant_db_dsn)


async def _prepare_database(dsn: str) -> None:
    await migrate(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        await seed(connection)
    finally:
        await connection.close()


async def _serve_http(settings: Settings, *, banner: str, worker: Worker | None = None) -> int:
    """Serve until SIGINT, SIGTERM or a fatal actor failure, then shut down in order.

    Returns the exit code: 0, or 70 (EX_SOFTWARE) when a subtree failed for good
    and ``SUPERVISOR_EXIT_ON_ESCALATION`` asked the platform to restart us. As
    one of the supervisor's workers, it shares the port with the others
    (``SO_REUSEPORT``) and reports its URLs to the supervisor, which prints them.
    """
    from .http import create_app  # noqa: PLC0415 - keeps `migrate` and `seed` light
    from .http.access_log import AccessLogger  # noqa: PLC0415
    from .http.actors import FATAL  # noqa: PLC0415

    _allow_many_sockets()
    app = create_app(settings)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=logging.getLogger("aiohttp.access") if settings.access_log else None,
        access_log_class=AccessLogger,
    )
    await runner.setup()
    try:
        site = web.TCPSite(
            runner, settings.http_host, settings.http_port, reuse_port=worker is not None
        )
        await site.start()
        urls = [f"http://{host}:{port}" for host, port, *_ in runner.addresses]
        if worker is None:
            for url in urls:
                print(f"exobrain is serving at {url}", flush=True)
        else:
            worker.report_listening(urls)
        if banner:
            print(banner, flush=True)
        gc.collect()
        gc.freeze()  # start-up's objects live for good: full collections need not walk them
        stopping, fatal = asyncio.Event(), app[FATAL]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1: every stack
        trimming = asyncio.create_task(trim_heap_after_bursts())
        waits = [asyncio.create_task(stopping.wait()), asyncio.create_task(fatal.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in [*waits, trimming]:
            task.cancel()
        log.info("shutting down%s", " after a fatal actor failure" if fatal.is_set() else "")
    finally:
        await runner.cleanup()
    return 70 if fatal.is_set() else 0


def _allow_many_sockets() -> None:
    """Every WebSocket holds a file descriptor; the common soft limit of 1024 would cap them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else min(hard, _MAX_OPEN_FILES)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


COMMANDS: dict[str, tuple[Callable[[Settings, Options], int], str]] = {
    "serve": (serve, "serve the API against the configured PostgreSQL, Redis and NATS"),
    "dev": (
        dev,
        "serve with embedded servers for whatever is not configured, mock agent, seed data",
    ),
    "orchestrator": (
        orchestrator_command,
        "serve the job orchestrator's gRPC EnqueueJob (JOB_ORCHESTRATOR_LISTEN) on NATS JetStream",
    ),
    "worker": (
        worker_command,
        "run the job worker: JetStream jobs to their handlers, lifecycle in PostgreSQL",
    ),
    "migrate": (migrate_command, "apply pending database migrations"),
    "seed": (seed_command, "load idempotent development data (applies migrations first)"),
}

#: The commands that take ``--workers``, and its default: ``serve`` uses every usable core.
WORKERS_DEFAULT: dict[str, Callable[[], int]] = {"serve": usable_cores, "dev": lambda: 1}
