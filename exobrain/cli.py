"""The ``exobrain`` command: ``serve``, ``dev``, ``orchestrator``, ``migrate`` and ``seed``."""

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
from typing import Any, TypeVar

import asyncpg
import uvloop
from aiohttp import web

from .config import ConfigurationError, Settings, configure_logging, load_settings
from .embedded import EmbeddedServerError, embedded_stack
from .store import migrate
from .store.seed import SEED_PASSWORD, SEED_USERS, seed

log = logging.getLogger("exobrain")

T = TypeVar("T")

#: Open files the server asks for (sockets included), within the hard limit.
_MAX_OPEN_FILES = 65_536

_INFRASTRUCTURE = ("assistant_db_dsn", "assistant_cache_redis_url", "exobrain_nats_url")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="exobrain", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        commands.add_parser(name, help=help_text, description=help_text)
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
        return command(settings)
    except (EmbeddedServerError, OSError, RuntimeError, asyncpg.PostgresError) as exc:
        log.error("%s failed: %s", args.command, exc)
        return 1


def serve(settings: Settings) -> int:
    missing = [name.upper() for name in _INFRASTRUCTURE if getattr(settings, name) is None]
    if missing:
        for name in missing:
            print(
                f"configuration error: {name}: required by `exobrain serve` "
                "(`exobrain dev` starts embedded servers instead)",
                file=sys.stderr,
            )
        return 2
    return _run(_serve_http(settings, banner=""))


def dev(settings: Settings) -> int:
    if "main_agent_use_mock" not in settings.model_fields_set:
        settings = settings.model_copy(update={"main_agent_use_mock": True})
    if "job_orchestrator_in_process" not in settings.model_fields_set:
        settings = settings.model_copy(update={"job_orchestrator_in_process": True})
    with embedded_stack(settings) as settings:
        _run(_prepare_database(str(settings.assistant_db_dsn)))
        emails = " or ".join(email for email, _ in SEED_USERS)
        banner = (
            f"log in as {emails} with password {SEED_PASSWORD}; "
            f"state in {settings.exobrain_state_dir}"
        )
        return _run(_serve_http(settings, banner=banner))


def orchestrator_command(settings: Settings) -> int:
    if settings.exobrain_nats_url is None:
        print(
            "configuration error: EXOBRAIN_NATS_URL: required by `exobrain orchestrator`",
            file=sys.stderr,
        )
        return 2
    from .orchestrator import serve as serve_orchestrator  # noqa: PLC0415 - keeps others light

    return _run(serve_orchestrator(settings))


def migrate_command(settings: Settings) -> int:
    dsn = _required_dsn(settings)
    applied = _run(migrate(dsn))
    print(f"applied {len(applied)} migration(s)" if applied else "schema is up to date")
    return 0


def seed_command(settings: Settings) -> int:
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


async def _serve_http(settings: Settings, *, banner: str) -> int:
    """Serve until SIGINT, SIGTERM or a fatal actor failure, then shut down in order.

    Returns the exit code: 0, or 70 (EX_SOFTWARE) when a subtree failed for good
    and ``SUPERVISOR_EXIT_ON_ESCALATION`` asked the platform to restart us.
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
        site = web.TCPSite(runner, settings.http_host, settings.http_port)
        await site.start()
        for address in runner.addresses:
            host, port = address[:2]
            print(f"exobrain is serving at http://{host}:{port}", flush=True)
        if banner:
            print(banner, flush=True)
        gc.collect()
        gc.freeze()  # start-up's objects live for good: full collections need not walk them
        stopping, fatal = asyncio.Event(), app[FATAL]
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1: every stack
        waits = [asyncio.create_task(stopping.wait()), asyncio.create_task(fatal.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in waits:
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


COMMANDS: dict[str, tuple[Callable[[Settings], int], str]] = {
    "serve": (serve, "serve the API against the configured PostgreSQL, Redis and NATS"),
    "dev": (
        dev,
        "serve with embedded servers for whatever is not configured, mock agent, seed data",
    ),
    "orchestrator": (
        orchestrator_command,
        "serve the job orchestrator's gRPC EnqueueJob (JOB_ORCHESTRATOR_LISTEN) on NATS JetStream",
    ),
    "migrate": (migrate_command, "apply pending database migrations"),
    "seed": (seed_command, "load idempotent development data (applies migrations first)"),
}
