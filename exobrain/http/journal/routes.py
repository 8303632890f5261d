"""``/api/journal``: the signed-in user's daily journals, read-only (DESIGN.md §5).

Lists are plain JSON arrays, as the reference API returned them (clients key
messages by ``id`` and sort by ``sequence``); when a further page exists, its
cursor is in the ``X-Next-Cursor`` header. References are ``YYYY/MM/DD`` with
unencoded slashes (``/api/journal/2025/01/14/messages``); encoded ones work
too. Entry and message pages come from the Redis read cache when they can
(``X-Cache: hit|miss|bypass``); see :mod:`exobrain.journal_cache`. Every query
is the caller's own: another user's journal is a 404, never their data.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from aiohttp import hdrs, web
from typing_extensions import TypedDict

from exobrain.auth import Credential, Principal
from exobrain.http.actors import JOURNAL_LISTENERS
from exobrain.http.auth.authentication import (
    RECENT_USERS,
    authenticate,
    authenticated,
    credential_of,
    unauthorized,
)
from exobrain.http.contract import INVALID, USER, Header, Reply, operation
from exobrain.http.errors import JsonError
from exobrain.http.resources import PG_POOL, REDIS, SETTINGS, redact, redis_client
from exobrain.http.validation import parse_path, parse_query
from exobrain.journal_cache import JournalCache, Outcome, Page
from exobrain.store import journal
from exobrain.store.journal import Entry, Message, SearchHit
from exobrain.store.journal_search import search_entries

from . import formats
from .params import (
    EntriesQuery,
    ExportQuery,
    MessagesQuery,
    ReferencePath,
    SearchQuery,
    TodayQuery,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

JOURNAL_CACHE = web.AppKey("journal_cache", JournalCache)
#: Loads a page of a user's journal (``reference``) or entry list (None) from PostgreSQL.
PageOf = Callable[[uuid.UUID, str | None], Awaitable[Page | None]]
NEXT_CURSOR = "X-Next-Cursor"

routes = web.RouteTableDef()


class Export(TypedDict):
    entry: Entry
    #: In reading (``sequence``) order.
    messages: list[Message]


_PAGE_HEADERS = {
    NEXT_CURSOR: Header("The `cursor` of the next page, while there is one.", required=False),
    "X-Cache": Header(
        "Whether the page came from the read cache.",
        {"enum": ["hit", "miss", "bypass"]},
        required=False,
    ),
}
ENTRY = Reply("The entry.", Entry, headers={"X-Cache": _PAGE_HEADERS["X-Cache"]})
NOT_FOUND = Reply("No such journal.")
MESSAGES = Reply("A page of messages, newest first.", list[Message], headers=_PAGE_HEADERS)


def setup_journal(app: web.Application) -> None:
    """Register the routes, and the cache, whose listener must be in place before the actors."""
    app.cleanup_ctx.append(journal_cache_ctx)
    app.router.add_routes(routes)


async def journal_cache_ctx(app: web.Application) -> AsyncIterator[None]:
    """The read cache, on ``JOURNAL_CACHE_REDIS_URL`` when set, else on the shared Redis.

    A Redis of its own may evict (``allkeys-lru``) and fail without touching
    sessions; its client neither retries nor waits longer than the cache would.
    """
    settings = app[SETTINGS]
    timeout = settings.journal_cache_timeout_seconds
    own = settings.journal_cache_redis_url
    client = (
        app[REDIS]
        if own is None
        else redis_client(str(own), connect_timeout=timeout, socket_timeout=timeout, retries=0)
    )
    if own is not None:
        log.info("journal read cache on Redis at %s", redact(own))
    cache = JournalCache(
        client,
        prefix=settings.redis_key_prefix,
        ttl=settings.journal_cache_ttl_seconds,
        timeout=timeout,
        retry=settings.journal_cache_retry_seconds,
        enabled=settings.journal_cache_enabled,
        checks_credentials=own is None,  # logins and sessions are on the shared Redis
    )
    app[JOURNAL_CACHE] = cache
    app[JOURNAL_LISTENERS].append(cache.listener())
    yield
    if own is not None:
        await client.aclose()


# Registration order is matching order: fixed paths before the ``{reference}`` ones.


@routes.get("/api/journal")
@operation(
    query=EntriesQuery,
    security=USER,
    outage=True,
    responses={200: Reply("A page of entries.", list[Entry], headers=_PAGE_HEADERS)},
)
async def entries(request: web.Request) -> web.Response:
    """The signed-in user's journal entries, newest reference first.

    A JSON array of `{id, reference, created_at, updated_at, last_message_at, message_count,
    status}`. `limit` 1-100 (20); `cursor` a reference: only older entries. `X-Next-Cursor`
    carries the cursor of the next page while there is one.
    """
    credential = credential_of(request)
    query = parse_query(request, EntriesQuery)
    pool = request.app[PG_POOL]

    async def load(user_id: uuid.UUID, _: str | None) -> Page:
        found = await journal.list_entries(
            pool, user_id, limit=query.limit + 1, before=query.cursor
        )
        return _page(found, query.limit, lambda entry: entry.reference)

    name = f"entries:{query.limit}:{query.cursor or ''}"
    return _found(await _cached_as(request, credential, None, name, load))


@routes.get("/api/journal/search")
@operation(
    query=SearchQuery,
    security=USER,
    outage=True,
    responses={200: Reply("The matching entries, best first.", list[SearchHit])},
)
@authenticated
async def search(request: web.Request, principal: Principal) -> web.Response:
    """Entries whose messages or reference match `q`, best first.

    Full-text search with every word as a prefix; a substring search for short or
    non-word queries, or when that finds nothing; `2025/01` also matches references. Each
    hit is an entry plus `snippet`: HTML-escaped text around the best match with the
    matches in `<mark>`, or null for a reference match. `limit` 1-100 (20).
    """
    query = parse_query(request, SearchQuery)
    hits = await search_entries(request.app[PG_POOL], principal.user_id, query.q, limit=query.limit)
    return _json(formats.dumps(hits))


@routes.get("/api/journal/today")
@operation(
    query=TodayQuery,
    security=USER,
    outage=True,
    responses={200: ENTRY, 404: NOT_FOUND},
)
@authenticated
async def today(request: web.Request, principal: Principal) -> web.Response:
    """Today's (UTC) entry; 404 when it does not exist, unless `create=true` creates it."""
    query = parse_query(request, TodayQuery)
    reference = _today()
    if (response := await _entry(request, principal.user_id, reference)) is not None:
        return response
    if not query.create:
        raise _not_found()
    created = await journal.ensure_entry(request.app[PG_POOL], principal.user_id, reference)
    await request.app[JOURNAL_CACHE].invalidate([(principal.user_id, reference)])
    return _json(formats.dumps(created))


@routes.get("/api/journal/today/messages")
@operation(
    query=MessagesQuery,
    security=USER,
    outage=True,
    responses={200: MESSAGES, 404: NOT_FOUND},
)
async def today_messages(request: web.Request) -> web.Response:
    """Today's messages, newest `sequence` first; 404 when today has no entry yet.

    As `/api/journal/{reference}/messages`.
    """
    return _found(await _messages(request, credential_of(request), _today()))


@routes.get("/api/journal/{reference:.+}/messages")
@operation(
    path=ReferencePath,
    query=MessagesQuery,
    security=USER,
    outage=True,
    responses={200: MESSAGES, 404: NOT_FOUND},
)
async def messages(request: web.Request) -> web.Response:
    """The messages of the journal `YYYY/MM/DD`, newest `sequence` first.

    A JSON array of `{id, role, content, sequence, created_at, metadata, tool_calls}`, tool
    calls `{id, tool_call_id, title, description, response, error}` in creation order.
    `limit` 1-500 (100); `cursor` a sequence: only messages below it. `X-Next-Cursor`
    carries the cursor of the next page while there is one. 404 for no such journal.
    """
    credential = credential_of(request)
    reference = parse_path(request, ReferencePath).reference
    return _found(await _messages(request, credential, reference))


@routes.get("/api/journal/{reference:.+}/export")
@operation(
    path=ReferencePath,
    query=ExportQuery,
    security=USER,
    outage=True,
    responses={
        200: Reply(
            "The journal as a file to save.",
            str,
            media_type="text/markdown",
            alternatives={"application/json": Export},
            headers={
                hdrs.CONTENT_DISPOSITION: Header('`attachment; filename="journal-YYYY-MM-DD.md"`')
            },
        ),
        404: NOT_FOUND,
    },
)
@authenticated
async def export(request: web.Request, principal: Principal) -> web.Response:
    """The whole journal `YYYY/MM/DD` as a download: `format=markdown` (default) or `json`.

    Messages in reading order with their tool calls; JSON is `{entry, messages}`.
    """
    reference = parse_path(request, ReferencePath).reference
    query = parse_query(request, ExportQuery)
    pool = request.app[PG_POOL]
    found = await journal.find_entry(pool, principal.user_id, reference)
    every = await journal.list_messages(
        pool, principal.user_id, reference, limit=None, newest_first=False
    )
    if found is None or every is None:
        raise _not_found()
    render, content_type, extension = formats.FORMATS[query.format]
    filename = f"journal-{reference.replace('/', '-')}.{extension}"
    return web.Response(
        body=render(found, every),
        content_type=content_type,
        charset="utf-8",
        headers={hdrs.CONTENT_DISPOSITION: f'attachment; filename="{filename}"'},
    )


@routes.get("/api/journal/{reference:.+}")
@operation(
    path=ReferencePath,
    security=USER,
    outage=True,
    responses={200: ENTRY, 404: NOT_FOUND, 422: INVALID},
)
async def entry(request: web.Request) -> web.Response:
    """The journal entry `YYYY/MM/DD`, or 404."""
    credential = credential_of(request)
    reference = parse_path(request, ReferencePath).reference
    return _found(await _cached_as(request, credential, reference, "entry", _entry_of(request)))


def _entry_of(request: web.Request) -> PageOf:
    pool = request.app[PG_POOL]

    async def load(user_id: uuid.UUID, reference: str | None) -> Page | None:
        assert reference is not None  # an entry is a journal's
        found = await journal.find_entry(pool, user_id, reference)
        return None if found is None else Page(formats.dumps(found))

    return load


async def _entry(request: web.Request, user_id: uuid.UUID, reference: str) -> web.Response | None:
    return await _read_through(request, user_id, reference, "entry", _entry_of(request))


async def _messages(
    request: web.Request, credential: Credential, reference: str
) -> web.Response | None:
    query = parse_query(request, MessagesQuery)
    pool = request.app[PG_POOL]

    async def load(user_id: uuid.UUID, reference: str | None) -> Page | None:
        assert reference is not None  # messages are a journal's
        found = await journal.list_messages(
            pool, user_id, reference, limit=query.limit + 1, before=query.cursor
        )
        return None if found is None else _page(found, query.limit, lambda m: str(m.sequence))

    name = f"messages:{query.limit}:{query.cursor or ''}"
    return await _cached_as(request, credential, reference, name, load)


async def _cached_as(
    request: web.Request,
    credential: Credential,
    reference: str | None,
    name: str,
    load: PageOf,
) -> web.Response | None:
    """The page for the owner of ``credential`` from the cache or ``load``; None: missing.

    The cache checks the credential in the script that reads the page; when it
    cannot, the request is authenticated as any other and then read through.
    """
    cache = request.app[JOURNAL_CACHE]
    checked = await cache.read_as(credential, reference, name)
    if checked is None:
        principal = await authenticate(request)
        return await _read_through(request, principal.user_id, reference, name, load)
    user_id = checked.user_id
    if user_id is None or await request.app[RECENT_USERS].get(user_id) is None:
        raise unauthorized()
    if checked.page is not None:
        return _served(checked.page, "hit")
    filled = await cache.fill(checked, reference, name, functools.partial(load, user_id, reference))
    return None if filled is None else _served(filled, "miss")


async def _read_through(
    request: web.Request, user_id: uuid.UUID, reference: str | None, name: str, load: PageOf
) -> web.Response | None:
    """The page of ``user_id`` (already authenticated) from the cache or ``load``."""
    load_own = functools.partial(load, user_id, reference)
    page, outcome = await request.app[JOURNAL_CACHE].page(user_id, reference, name, load_own)
    return None if page is None else _served(page, outcome)


def _served(page: Page, outcome: Outcome) -> web.Response:
    response = _json(page.body)
    response.headers["X-Cache"] = outcome
    if page.cursor:
        response.headers[NEXT_CURSOR] = page.cursor
    return response


def _page(items: Sequence[T], limit: int, cursor_of: Callable[[T], str]) -> Page:
    """Up to ``limit`` of ``items`` (fetched with one extra to tell whether more exist)."""
    shown = items[:limit]
    return Page(formats.dumps(shown), cursor_of(shown[-1]) if len(items) > limit else "")


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


def _today() -> str:
    return datetime.now(UTC).strftime("%Y/%m/%d")


def _found(response: web.Response | None) -> web.Response:
    if response is None:
        raise _not_found()
    return response


def _not_found() -> JsonError:
    return JsonError(404, "journal not found")
