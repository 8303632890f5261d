"""The actor tree as an application resource: started after PostgreSQL, stopped before it.

Children are declared as factories in ``app[ACTOR_CHILDREN]`` because they
need resources (the pool, the loop) that exist only once start-up runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from exobrain.actors.journal import Listener, journal_spec
from exobrain.metrics import Metrics
from exobrain.supervision import ActorSystem, ChildHandle, ChildSpec, Intensity, fatal_event

from .health import READINESS
from .resources import PG_POOL, SETTINGS

#: Builds one child spec of the root supervisor, at start-up.
ChildFactory = Callable[[web.Application], ChildSpec]

ACTORS = web.AppKey("actors", ActorSystem)
ACTOR_CHILDREN = web.AppKey("actor_children", list[ChildFactory])
JOURNAL = web.AppKey("journal", ChildHandle)
SESSIONS = web.AppKey("sessions", ChildHandle)
JOURNAL_LISTENERS = web.AppKey("journal_listeners", list[Listener])
METRICS = web.AppKey("metrics", Metrics)
#: Set when a subtree failed for good and SUPERVISOR_EXIT_ON_ESCALATION is on.
FATAL = web.AppKey("fatal", asyncio.Event)


def journal_child(app: web.Application) -> ChildSpec:
    listeners: list[Listener] = app[JOURNAL_LISTENERS]
    return journal_spec(
        app[SETTINGS], app[PG_POOL], asyncio.get_running_loop(), app[METRICS], listeners
    )


async def actors_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    loop = asyncio.get_running_loop()
    system = await asyncio.to_thread(
        ActorSystem,
        [factory(app) for factory in app[ACTOR_CHILDREN]],
        intensity=Intensity(
            max_restarts=settings.supervisor_max_restarts,
            window=settings.supervisor_restart_window_seconds,
        ),
        on_fatal=fatal_event(loop, app[FATAL]) if settings.supervisor_exit_on_escalation else None,
    )
    app[ACTORS] = system
    app[JOURNAL] = system.handle("journal")
    app[SESSIONS] = system.handle("sessions")
    app[READINESS].add("actors", system.check)
    yield
    app[READINESS].remove("actors")
    await asyncio.to_thread(system.stop, settings.actor_shutdown_timeout_seconds)
