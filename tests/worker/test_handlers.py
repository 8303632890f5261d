"""Handlers named by import path in ``JOB_WORKER_HANDLERS``."""

from __future__ import annotations

import pytest

from exobrain.worker import HandlerNotFound, imported

from .handlers import EFFECT, effect


def test_an_import_path_names_its_handler() -> None:
    assert imported({EFFECT: "worker.handlers:effect"}) == {EFFECT: effect}


@pytest.mark.parametrize(
    "path", ["worker.nowhere:effect", "worker.handlers:missing", "worker.handlers:EFFECT"]
)
def test_a_path_naming_no_handler_stops_start_up_naming_it(path: str) -> None:
    with pytest.raises(HandlerNotFound, match=f"JOB_WORKER_HANDLERS: {EFFECT}: {path}"):
        imported({EFFECT: path})
