"""Run named benchmarks against a running server and print figures as text and JSON.

python -m bench healthz readyz --url http://127.0.0.1:8000 --json results.json
python -m bench chat --dsn ... --reference chat.one_user.p50_ms=40.9 --reference chat.many.per_s=25
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson
import uvloop

from . import (  # noqa: F401 - registers them
    auth,
    chat,
    chat_socket,
    cluster,
    health,
    journal,
    journal_api,
    knowledge,
    knowledge_loop,
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
    parser.add_argument(
        "--reference",
        action="append",
        default=[],
        type=_reference,
        metavar="KEY.FIGURE=VALUE",
        help="print the ratio of our figure to this reference value beside it, e.g. "
        "chat.many.turns_per_s=25.5 (figures: the JSON's fields of a result, by its key)",
    )
    args = parser.parse_args()
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown or not args.names:
        parser.error(f"choose benchmarks from: {', '.join(BENCHMARKS)}")
    references: dict[str, float] = dict(args.reference)
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
        print(summary.line(references))
    compared = {
        name: asdict(reference)
        for summary in results
        for name, reference in summary.references(references).items()
    }
    for name in references.keys() - compared.keys():
        keys = ", ".join(summary.reference_key for summary in results)
        print(f"--reference {name}: no such figure (result keys: {keys})", file=sys.stderr)
    report = {
        "at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "url": options.url,
        "results": [summary.as_dict() for summary in results],
        **({"references": compared} if references else {}),
    }
    print(orjson.dumps(report).decode())
    if args.json:
        args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return 1 if any(summary.errors for summary in results) else 0


def _reference(text: str) -> tuple[str, float]:
    """``chat.many.turns_per_s=25.5`` → (``chat.many.turns_per_s``, 25.5)."""
    name, equals, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not equals or "." not in name.strip(".") or not math.isfinite(number) or number <= 0:
        raise argparse.ArgumentTypeError(
            f"expected KEY.FIGURE=VALUE with a positive number, e.g. chat.many.p50_ms=40.9 "
            f"(got {text!r})"
        )
    return name.strip(), number


sys.exit(main())
