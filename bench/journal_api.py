"""Message pages of a 1,000-message journal over HTTP, as a client pages through them.

``GET /api/journal/2024/12/31/messages?limit=100`` with cursors drawn from ten
values, signed in as the seeded ``test.user@exobrain.local``. The journal is
written first, if missing, straight into ``--dsn`` with the JournalActor's own
batch writer (the server's data path, without its process): 1,000 messages of
100-1,500 characters. The server decides whether the cache is used: run once
against a default server (pages warm: every cursor is fetched once first) and
once against one started with ``JOURNAL_CACHE_ENABLED=false``; each result is
named after the ``X-Cache`` answers it got (``hit``, ``bypass``).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import aiohttp
import asyncpg

from exobrain.actors.journal import AppendMessages, NewMessage
from exobrain.actors.journal.store import write_batch
from exobrain.config import load_settings
from exobrain.store import create_pool

from .auth import _login
from .load import closed_loop
from .registry import Options, benchmark
from .stats import Summary

REFERENCE = "2024/12/31"
MESSAGES = 1000
PAGE = 100
#: No cursor (the newest page), then the start of every older page.
CURSORS = [None, *range(MESSAGES - PAGE + 1, 1, -PAGE)]
EMAIL = "test.user@exobrain.local"
_WORDS = ("journal", "memory", "review", "sleep", "spaced", "repetition", "plan", "note", "idea")


async def _ensure_journal(dsn: str) -> None:
    pool = await create_pool(load_settings(assistant_db_dsn=dsn))
    try:
        user_id = await pool.fetchval("SELECT id FROM users WHERE lower(email) = $1", EMAIL)
        if user_id is None:
            raise SystemExit(f"{EMAIL} is missing: is this an `exobrain dev` database?")
        stored = await pool.fetchval(
            "SELECT message_count FROM conversations WHERE user_id = $1 AND reference = $2",
            user_id,
            REFERENCE,
        )
        rng = random.Random(REFERENCE)
        for start in range(stored or 0, MESSAGES, PAGE):
            batch = tuple(
                NewMessage(
                    "user" if n % 2 else "assistant",
                    " ".join(rng.choices(_WORDS, k=300))[: rng.randint(100, 1500)],
                )
                for n in range(start, min(start + PAGE, MESSAGES))
            )
            await write_batch(pool, [AppendMessages(user_id, REFERENCE, batch)])
    finally:
        await pool.close()


@benchmark("journal-api")
async def journal_api(session: aiohttp.ClientSession, options: Options) -> list[Summary]:
    """Message pages (limit 100) of a 1,000-message journal at ``--concurrency``."""
    if options.dsn is None:
        raise SystemExit("journal-api needs --dsn (or ASSISTANT_DB_DSN) to write its journal")
    try:
        await _ensure_journal(options.dsn)
    except (OSError, asyncpg.PostgresError) as exc:
        raise SystemExit(f"cannot write the benchmark journal: {exc}") from exc
    token = await _login(session, options)
    if token is None:
        raise SystemExit("the seeded login failed: is this an `exobrain dev` server?")
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{options.url}/api/journal/{REFERENCE}/messages"
    answers: Counter[str] = Counter()

    async def page(cursor: int | None) -> bool:
        params = {"limit": str(PAGE), **({"cursor": str(cursor)} if cursor else {})}
        async with session.get(url, params=params, headers=headers) as response:
            body = await response.read()
            answers[response.headers.get("X-Cache", "none")] += 1
            return response.status == 200 and body.count(b'"sequence"') == PAGE

    for cursor in CURSORS:  # warm-up: connections, and the cache when it is on
        await page(cursor)
    answers.clear()
    result = await closed_loop(
        "journal_messages",
        lambda: page(random.choice(CURSORS)),
        total=options.requests,
        concurrency=options.concurrency,
    )
    cache = ",".join(outcome for outcome, _ in answers.most_common())
    return [replace(result, name=f"journal_messages cache={cache}")]
