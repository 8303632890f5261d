"""Bad journal parameters are 422 naming the parameter, in FastAPI's shape; never a 500."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from auth_support import AiohttpClient
from journal_support import REFERENCE, Reader, reader, start_journal

from exobrain.config import Settings

MESSAGES = f"/api/journal/{REFERENCE}/messages"


@pytest.fixture
async def alice(aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]) -> Reader:
    alice = await reader(await start_journal(aiohttp_client, make_settings))
    await alice.write(REFERENCE, "hello")
    return alice


@pytest.mark.parametrize(
    ("path", "params", "loc", "kind"),
    [
        ("/api/journal", {"limit": 0}, ["query", "limit"], "greater_than_equal"),
        ("/api/journal", {"limit": 101}, ["query", "limit"], "less_than_equal"),
        ("/api/journal", {"limit": "ten"}, ["query", "limit"], "int_parsing"),
        ("/api/journal", {"cursor": "2025-01-14"}, ["query", "cursor"], "value_error"),
        ("/api/journal", {"cursor": "2025/02/30"}, ["query", "cursor"], "value_error"),
        (MESSAGES, {"limit": 0}, ["query", "limit"], "greater_than_equal"),
        (MESSAGES, {"limit": 501}, ["query", "limit"], "less_than_equal"),
        (MESSAGES, {"cursor": "abc"}, ["query", "cursor"], "int_parsing"),
        (MESSAGES, {"cursor": 0}, ["query", "cursor"], "greater_than_equal"),
        (MESSAGES, {"cursor": 2**63}, ["query", "cursor"], "less_than_equal"),
        ("/api/journal/today/messages", {"limit": -1}, ["query", "limit"], "greater_than_equal"),
        ("/api/journal/today", {"create": "maybe"}, ["query", "create"], "bool_parsing"),
        ("/api/journal/search", {}, ["query", "q"], "missing"),
        ("/api/journal/search", {"q": "   "}, ["query", "q"], "value_error"),
        ("/api/journal/search", {"q": "x" * 201}, ["query", "q"], "string_too_long"),
        ("/api/journal/search", {"q": "x", "limit": 0}, ["query", "limit"], "greater_than_equal"),
        ("/api/journal/2025/02/30", {}, ["path", "reference"], "value_error"),
        ("/api/journal/2025/13/01/messages", {}, ["path", "reference"], "value_error"),
        ("/api/journal/2025-01-14", {}, ["path", "reference"], "value_error"),
        ("/api/journal/1/2/3/export", {}, ["path", "reference"], "value_error"),
    ],
)
async def test_each_bad_parameter_is_a_422_naming_it(
    alice: Reader, path: str, params: dict[str, object], loc: list[str], kind: str
) -> None:
    response = await alice.get(path, **params)
    assert response.status == 422, await response.text()
    [problem] = (await response.json())["detail"]
    assert set(problem) == {"loc", "msg", "type"}
    assert (problem["loc"], problem["type"]) == (loc, kind)
    assert problem["msg"]


async def test_several_bad_parameters_are_all_named(alice: Reader) -> None:
    response = await alice.get(MESSAGES, limit=0, cursor="x")
    assert response.status == 422
    locs = [problem["loc"] for problem in (await response.json())["detail"]]
    assert locs == [["query", "limit"], ["query", "cursor"]]


async def test_bounds_themselves_are_accepted(alice: Reader) -> None:
    for path, limit in (("/api/journal", 1), ("/api/journal", 100), (MESSAGES, 500)):
        assert (await alice.get(path, limit=limit)).status == 200
    assert (await alice.get("/api/journal/2024/02/29")).status == 404  # a real (leap) day
