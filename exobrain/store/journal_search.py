"""Search a user's journals: full text with prefixes, a substring fallback, reference matches.

Word queries of three characters or more use the messages' ``simple``
tsvector (GIN index) with every word as a prefix (``spac & rep`` finds "spaced
repetition"). Shorter or non-word queries (``c++``, ``e.g.``), and word queries
that found nothing (the middle of a word), fall back to ``ILIKE`` with the
wildcards escaped. Either way an entry whose reference contains the query
(``2025/01``, ``2025-01``) is a hit too, ranked above text matches. User input
only ever reaches PostgreSQL as bind parameters; the tsquery is built from
letters and digits alone, so it cannot carry tsquery operators.

The tsvector covers a message's first :data:`INDEXED_CHARS` characters
(migration 0009: PostgreSQL refuses a tsvector over 1 MB), so a longer message
is found by its beginning, and its snippet is cut from there.
"""

from __future__ import annotations

import html
import re
import uuid
from dataclasses import dataclass, replace

import asyncpg

from .journal import SearchHit

_WORD_QUERY = re.compile(r"[^\W_]+(?:\s+[^\W_]+)*")
_WORD = re.compile(r"[^\W_]+")
_LIKE_SPECIAL = re.compile(r"([\\%_])")
#: Characters of context either side of a substring match.
_CONTEXT = 60
#: How much of a message its tsvector covers: ``left(content, 100000)`` in migration 0009.
INDEXED_CHARS = 100_000
_ESCAPED_CONTENT = (
    f"replace(replace(replace(left(b.content, {INDEXED_CHARS}), '&', '&amp;'), '<', '&lt;'),"
    " '>', '&gt;')"
)


@dataclass(frozen=True, slots=True)
class _Method:
    """How messages match: a predicate on ``m``, its rank, and the snippet of the best one."""

    predicate: str
    rank: str
    snippet: str


_FULL_TEXT = _Method(
    predicate="m.search_vector @@ to_tsquery('simple', $2)",
    rank="ts_rank(m.search_vector, to_tsquery('simple', $2))",
    snippet=f"ts_headline('simple', {_ESCAPED_CONTENT}, to_tsquery('simple', $2),"
    " 'StartSel=<mark>, StopSel=</mark>, MinWords=8, MaxWords=24, MaxFragments=1')",
)
_SUBSTRING = _Method(
    predicate="m.content ILIKE $2 ESCAPE '\\'", rank="1.0::real", snippet="b.content"
)


def _statement(method: _Method) -> str:
    return f"""
    WITH matched AS (
        SELECT m.conversation_id, m.sequence, m.content, {method.rank} AS rank
        FROM conversations c JOIN messages m ON m.conversation_id = c.id
        WHERE c.user_id = $1 AND m.user_id = $1 AND {method.predicate}
    ), totals AS (
        SELECT conversation_id, sum(rank) AS score FROM matched GROUP BY conversation_id
    ), best AS (
        SELECT DISTINCT ON (conversation_id) conversation_id, content FROM matched
        ORDER BY conversation_id, rank DESC, sequence DESC
    ), page AS (
        SELECT c.id, c.reference, c.created_at, c.updated_at, c.last_message_at,
               c.message_count, c.status, b.content, c.reference LIKE $3 ESCAPE '\\' AS named,
               coalesce(t.score, 0) AS score
        FROM conversations c
        LEFT JOIN totals t ON t.conversation_id = c.id
        LEFT JOIN best b ON b.conversation_id = c.id
        WHERE c.user_id = $1 AND (t.conversation_id IS NOT NULL OR c.reference LIKE $3 ESCAPE '\\')
        ORDER BY named DESC, score DESC, c.reference DESC LIMIT $4
    )
    SELECT id, reference, created_at, updated_at, last_message_at, message_count, status,
           CASE WHEN content IS NULL THEN NULL ELSE {method.snippet} END AS snippet
    FROM page b ORDER BY named DESC, score DESC, reference DESC
    """  # noqa: S608 - assembled from the constants above, never from input


_STATEMENTS = {method: _statement(method) for method in (_FULL_TEXT, _SUBSTRING)}


async def search_entries(
    pool: asyncpg.Pool, user_id: uuid.UUID, query: str, *, limit: int
) -> list[SearchHit]:
    """The user's entries matching ``query``, best first (ties: newest first)."""
    query = query.strip()
    reference = f"%{_like_escaped(query.replace('-', '/'))}%"
    if len(query) >= 3 and _WORD_QUERY.fullmatch(query):
        prefixes = " & ".join(f"{word.lower()}:*" for word in _WORD.findall(query))
        if hits := await _search(
            pool, _FULL_TEXT, user_id, prefixes, reference=reference, limit=limit
        ):
            return hits
    substring = f"%{_like_escaped(query)}%"
    hits = await _search(pool, _SUBSTRING, user_id, substring, reference=reference, limit=limit)
    return [replace(hit, snippet=_substring_snippet(hit.snippet, query)) for hit in hits]


async def _search(
    pool: asyncpg.Pool,
    method: _Method,
    user_id: uuid.UUID,
    match: str,
    *,
    reference: str,
    limit: int,
) -> list[SearchHit]:
    rows = await pool.fetch(_STATEMENTS[method], user_id, match, reference, limit)
    return [SearchHit(*row.values()) for row in rows]


def _like_escaped(text: str) -> str:
    return _LIKE_SPECIAL.sub(r"\\\1", text)


def _substring_snippet(content: str | None, query: str) -> str | None:
    """``content`` around the first occurrence of ``query``, HTML-escaped, the match marked."""
    if content is None:
        return None
    found = re.search(re.escape(query), content, re.IGNORECASE)
    if found is None:  # ILIKE and Python disagree on a case mapping: show the start
        return html.escape(content[: 2 * _CONTEXT])
    start, end = found.span()
    before = content[max(0, start - _CONTEXT) : start]
    after = content[end : end + _CONTEXT]
    return (
        ("…" if start > _CONTEXT else "")
        + html.escape(before)
        + f"<mark>{html.escape(found.group())}</mark>"
        + html.escape(after)
        + ("…" if end + _CONTEXT < len(content) else "")
    )
