"""Liveness and readiness.

``/healthz`` answers as long as the event loop turns. ``/readyz`` asks every
registered dependency at once, each within ``READINESS_TIMEOUT_SECONDS``, and
answers 503 naming what is not ready. Why a check failed (hosts, ports, driver
messages) and how long it took are shown only to operators: anyone else sees a
status per dependency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Literal, NotRequired

from aiohttp import web
from typing_extensions import TypedDict

from .contract import Reply, operation
from .errors import json_response

#: A readiness check: returns normally when ready, raises (with a reason) otherwise.
Check = Callable[[], Awaitable[None]]


class Readiness:
    """The registry of readiness checks; resources add theirs when they start."""

    def __init__(self, timeout: float, sees_details: Callable[[web.Request], bool]) -> None:
        self.timeout = timeout
        #: Whether a request may see each check's error and latency.
        self.sees_details = sees_details
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    def remove(self, name: str) -> None:
        self._checks.pop(name, None)

    async def report(self) -> tuple[bool, dict[str, dict[str, object]]]:
        names = list(self._checks)
        results = await asyncio.gather(*(self._run(self._checks[name]) for name in names))
        report = dict(zip(names, results, strict=True))
        return all(result["status"] == "ok" for result in results), report

    async def _run(self, check: Check) -> dict[str, object]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                await check()
        except TimeoutError:
            return {"status": "error", "error": f"no answer within {self.timeout:g}s"}
        except Exception as exc:  # a check's failure is its report, whatever it is
            return {"status": "error", "error": str(exc) or type(exc).__name__}
        return {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


READINESS = web.AppKey("readiness", Readiness)


class Alive(TypedDict):
    status: Literal["ok"]


class CheckReport(TypedDict):
    """One dependency: ``ok`` or ``error``; how long it took to answer, or why it failed,
    only under ``APP_ENV=local`` or with the ops token."""

    status: Literal["ok", "error"]
    latency_ms: NotRequired[float]
    error: NotRequired[str]


class ReadinessReport(TypedDict):
    status: Literal["ok", "unavailable"]
    checks: dict[str, CheckReport]


routes = web.RouteTableDef()


@routes.get("/healthz")
@operation(responses={200: Reply("The process is alive.", Alive)})
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process is up and its event loop is responsive."""
    return json_response({"status": "ok"})


@routes.get("/readyz")
@operation(
    responses={
        200: Reply("Every dependency is ready.", ReadinessReport),
        503: Reply(
            "Some dependency is not ready; its check says why (locally or with the ops token).",
            ReadinessReport,
        ),
    }
)
async def readyz(request: web.Request) -> web.Response:
    """Readiness of every dependency; 503 names the ones that are not ready.

    Each check's error and latency only under `APP_ENV=local` or with the ops token."""
    readiness = request.app[READINESS]
    ready, checks = await readiness.report()
    if not readiness.sees_details(request):
        checks = {name: {"status": check["status"]} for name, check in checks.items()}
    return json_response(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )
