"""The access logger: one line per request, its fields structured for the JSON logs."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from exobrain.http.access_log import AccessLogger


def test_a_request_is_one_line_with_its_fields(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("aiohttp.access")
    request = make_mocked_request("GET", "/api/journal?limit=5")
    response = web.Response(body=b"[1, 2]", status=200)
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        AccessLogger(logger, "").log(request, response, 0.0125)
    [record] = caplog.records
    assert record.getMessage() == "GET /api/journal?limit=5 200 12.5ms"
    fields = {key: vars(record)[key] for key in ("remote", "status", "duration_ms", "bytes")}
    assert fields == {"remote": request.remote, "status": 200, "duration_ms": 12.5, "bytes": 0}


def test_the_target_is_logged_as_sent_and_a_disabled_log_costs_no_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("aiohttp.access")
    request = make_mocked_request("GET", "/api/journal/2025%2F01%2F14/messages?cursor=5")
    response = web.Response(status=404)
    with caplog.at_level(logging.INFO, logger="aiohttp.access"):
        AccessLogger(logger, "").log(request, response, 0.001)
    with caplog.at_level(logging.WARNING, logger="aiohttp.access"):
        AccessLogger(logger, "").log(request, response, 0.001)
    [record] = caplog.records
    assert record.getMessage() == "GET /api/journal/2025%2F01%2F14/messages?cursor=5 404 1.0ms"
    assert record.name == "aiohttp.access"
