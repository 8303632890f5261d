"""``/api/journal/search``: prefix full-text search, substring fallback, references, snippets."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from auth_support import AiohttpClient
from journal_support import Reader, reader, start_journal

from exobrain.config import Settings

SEARCH = "/api/journal/search"


@pytest.fixture
async def alice(aiohttp_client: AiohttpClient, make_settings: Callable[..., Settings]) -> Reader:
    alice = await reader(await start_journal(aiohttp_client, make_settings))
    await alice.write("2025/01/14", "Started reading about spaced repetition today.")
    await alice.write(
        "2025/01/19",
        "Spaced repetition again: spaced cards, spaced reviews, spaced everything.",
        "Sleep <b>helps</b> memory & recall.",
    )
    await alice.write("2025/02/03", "The architecture review moved to Thursday (50% done).")
    return alice


async def search(alice: Reader, q: str, **params: object) -> list[dict[str, object]]:
    hits: list[dict[str, object]] = await alice.json(SEARCH, q=q, **params)
    return hits


async def test_full_text_with_prefixes_ranks_the_denser_day_first(alice: Reader) -> None:
    hits = await search(alice, "spac repet")
    assert [hit["reference"] for hit in hits] == ["2025/01/19", "2025/01/14"]
    assert set(hits[0]) >= {"id", "reference", "message_count", "snippet"}
    snippet = str(hits[0]["snippet"])
    assert "<mark>Spaced</mark>" in snippet
    assert "<mark>repetition</mark>" in snippet


async def test_snippets_are_html_safe(alice: Reader) -> None:
    [hit] = await search(alice, "memory")
    assert "Sleep &lt;b&gt;helps&lt;/b&gt; <mark>memory</mark> &amp; recall" in str(hit["snippet"])
    [hit] = await search(alice, "<b>")  # a non-word query: substring, escaped, marked
    assert hit["snippet"] == "Sleep <mark>&lt;b&gt;</mark>helps&lt;/b&gt; memory &amp; recall."


async def test_short_and_mid_word_queries_fall_back_to_substrings(alice: Reader) -> None:
    assert [h["reference"] for h in await search(alice, "50")] == ["2025/02/03"]
    assert [h["reference"] for h in await search(alice, "y (")] == ["2025/02/03"]
    [hit] = await search(alice, "chitect")  # no word starts so: the substring finds it
    assert hit["reference"] == "2025/02/03"
    assert "ar<mark>chitect</mark>ure" in str(hit["snippet"])


async def test_wildcards_and_operators_in_queries_are_plain_text(alice: Reader) -> None:
    for q in ("50%", "%", "0% d"):
        assert [h["reference"] for h in await search(alice, q)] == ["2025/02/03"], q
    for q in ("_", "\\", "%%", "'; DROP TABLE messages; --", "a & | ! :* (", "spaced:*"):
        assert await search(alice, q) == [], q
    assert len(await search(alice, "spaced")) == 2  # the table is still there


async def test_references_match_and_rank_first(alice: Reader) -> None:
    assert [h["reference"] for h in await search(alice, "2025/01")] == [
        "2025/01/19",
        "2025/01/14",
    ]
    [hit] = await search(alice, "2025-02")
    assert (hit["reference"], hit["snippet"]) == ("2025/02/03", None)
    await alice.write("2025/03/01", "remember 2025/02 planning")
    hits = await search(alice, "2025/02")
    assert [h["reference"] for h in hits] == ["2025/02/03", "2025/03/01"]


async def test_limit_caps_the_hits(alice: Reader) -> None:
    assert len(await search(alice, "s", limit=2)) == 2
    assert len(await search(alice, "s")) == 3


async def test_a_message_too_long_for_one_tsvector_is_stored_and_found(alice: Reader) -> None:
    """1.3 MB of distinct words: to_tsvector of all of it fails (over 1 MB), so before
    migration 0009 it could not be stored. Its beginning is indexed; the rest is still
    found, by the substring fallback."""
    words = [f"huge{n:06d}" for n in range(120_000)]
    await alice.write("2025/03/01", " ".join(words))
    [hit] = await search(alice, "huge000001")
    assert hit["reference"] == "2025/03/01"
    assert "<mark>huge000001</mark>" in str(hit["snippet"])
    [hit] = await search(alice, "huge119999")  # past the index: found as a substring
    assert str(hit["snippet"]).endswith("<mark>huge119999</mark>")
