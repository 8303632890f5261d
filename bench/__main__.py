"""Run named benchmarks against a running server and print figures as text and JSON.

python -m bench healthz readyz --url http://127.0.0.1:8000 --json results.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
import uvloop

from . import (  # noqa: F401 - registers them
    auth,
    chat,
    chat_socket,
    health,
    journal,
    journal_api,
    knowledge,
)
from .registry import BENCHMARKS, Options
from .stats import Summary


async def run(names: list[str], options: Options) -> list[Summary]:
    connector = aiohttp.TCPConnector(limit=max(100, options.concurrency))
    async with aiohttp.ClientSession(connector=connector) as session:
        results = []
        for name in names:
            results.extend(await BENCHMARKS[name](session, options))
        return results


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--dsn",
        default=os.environ.get("ASSISTANT_DB_DSN"),
        help="PostgreSQL for in-process benchmarks (default: $ASSISTANT_DB_DSN)",
    )
    parser.add_argument("--connections", type=int, default=5000, help="sockets for ws-idle")
    parser.add_argument("--tabs", type=int, default=5, help="sockets per user for ws-idle")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown or not args.names:
        parser.error(f"choose benchmarks from: {', '.join(BENCHMARKS)}")
    options = Options(
        args.url.rstrip("/"),
        args.requests,
        args.concurrency,
        args.dsn,
        connections=args.connections,
        tabs=args.tabs,
    )
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # as the service runs
        results = runner.run(run(args.names, options))
    for summary in results:
        print(summary.line())
    report = {
        "at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "url": options.url,
        "results": [summary.as_dict() for summary in results],
    }
    print(orjson.dumps(report).decode())
    if args.json:
        args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return 1 if any(summary.errors for summary in results) else 0


sys.exit(main())
