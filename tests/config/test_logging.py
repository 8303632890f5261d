"""Logs: readable locally, JSON lines elsewhere, at LOG_LEVEL."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import orjson
import pytest

from exobrain.config import Settings, configure_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def test_json_lines_outside_local(
    make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(make_settings(app_env="production", auth_jwt_secret="s" * 40))
    logging.getLogger("exobrain.test").info("hello %s", "world", extra={"user_id": "u1"})
    logging.getLogger("exobrain.test").debug("not at INFO")
    [line] = capsys.readouterr().err.splitlines()
    entry = orjson.loads(line)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "exobrain.test"
    assert entry["message"] == "hello world"
    assert entry["user_id"] == "u1"


def test_log_level_is_honoured_locally(
    make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(make_settings(log_level="WARNING"))
    logging.getLogger("exobrain.test").info("quiet")
    logging.getLogger("exobrain.test").warning("loud")
    [line] = capsys.readouterr().err.splitlines()
    assert "WARNING" in line
    assert line.endswith("exobrain.test: loud")
