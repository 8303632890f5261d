"""Which handler runs which job type: the built-in ones, plus ``JOB_WORKER_HANDLERS``.

Built in: ``knowledge.update``, wherever the knowledge base is open (Qdrant and
embeddings): a worker without it leaves those jobs to the workers that have it.

``JOB_WORKER_HANDLERS`` maps further job types (those of
``JOB_ORCHESTRATOR_JSON_JOB_TYPES``, say) to handlers by import path,
``package.module:function``, so a deployment adds a job type without changing
this package.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

from exobrain.config import Settings
from exobrain.jobs import KNOWLEDGE_UPDATE
from exobrain.jobs.handling import Handler

if TYPE_CHECKING:
    from exobrain.knowledge import PassageStore


class HandlerNotFound(RuntimeError):
    """An import path in ``JOB_WORKER_HANDLERS`` names nothing callable."""


def imported(paths: Mapping[str, str]) -> dict[str, Handler]:
    handlers: dict[str, Handler] = {}
    for job_type, path in paths.items():
        module_name, _, attribute = path.partition(":")
        try:
            handler = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise HandlerNotFound(f"JOB_WORKER_HANDLERS: {job_type}: {path}: {exc}") from exc
        if not callable(handler):
            raise HandlerNotFound(f"JOB_WORKER_HANDLERS: {job_type}: {path} is not callable")
        handlers[job_type] = handler
    return handlers


def handlers_for(settings: Settings, passages: PassageStore | None) -> dict[str, Handler]:
    builtin = {}
    if passages is not None:
        from exobrain.knowledge import update_handler  # noqa: PLC0415 - Qdrant's, with it

        builtin[KNOWLEDGE_UPDATE] = update_handler(passages)
    return builtin | imported(settings.job_worker_handlers)
