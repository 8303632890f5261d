"""A Redis read cache of journal pages, invalidated exactly when the journal changes.

Every journal, and every user's list of entries, has a *generation*: a random
token in Redis. A page's key contains the generation it was read under, so
invalidation is one ``DEL`` of the changed journals' (and their owners'
lists') generations, and the next reader mints fresh tokens; old pages are
never read again and expire on
their TTL (jittered so that pages filled together do not expire together). A
reader takes the generation *before* querying PostgreSQL, so a page filled
from a pre-write snapshot is stored under the old token: a reader who saw a
write acknowledged (the JournalActor announces before it answers) finds the
new token and misses. Tokens are random rather than counters so that a
generation lost to eviction or a Redis restart can never come back to match
old pages.

A miss is filled once per process: concurrent readers of the same cold page
wait for the first one's query (single-flight on an in-process future).
Concurrent reads share one script call (:class:`~exobrain.auth.Batcher`),
each answered by a call that started after it was asked: as fresh as a read
of its own, which the invalidation order above needs.

On the Redis that holds logins and sessions, :meth:`JournalCache.read_as`
also reads the caller's login or session in the same script, so a hit costs
one shared round trip for authentication and page together (the generation
key is derived from the user that the login or session names).

Redis is an optimisation, never a dependency. Each call has a short timeout;
after a failure the cache is bypassed for ``retry`` seconds and reads go to
PostgreSQL. An invalidation that cannot reach Redis is remembered, and until
it lands this process reads only from PostgreSQL; other processes may serve
the older page until its TTL (``JOURNAL_CACHE_TTL_SECONDS``) ends: that is the
bound on staleness when Redis is partitioned from a writer but not from a
reader. Needs a single Redis (not Cluster): page keys are derived in a script.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import redis.asyncio as redis

from exobrain.actors.journal import JournalChanged, Listener
from exobrain.auth import Batcher, Credential

log = logging.getLogger(__name__)

#: Loads a page from PostgreSQL; None: there is no such page.
Load = Callable[[], Awaitable["Page | None"]]
#: How a page was served, for the ``X-Cache`` header and the benchmark.
Outcome = Literal["hit", "miss", "bypass"]
#: A generation outlives every page stored under it only for hit rate, never for correctness.
_GENERATION_TTL = 86_400
_JITTER = 0.1

#: Credentials whose user this process remembers, to offer its copies of their pages.
_OWNERS = 4096
#: Pages this process keeps in memory, so that a hit moves a token, not the page, from Redis.
_LOCAL_BYTES = 64 * 1024 * 1024

# KEYS: generations; ARGV: a fresh token, the generation TTL, then for each key a page name
# and the generation of this process's copy of that page. Returns for each key {generation}
# when that copy is current, else {generation, page or nil, page TTL in ms}.
_READ = """
local read = {}
for i, key in ipairs(KEYS) do
    local generation = redis.call('GET', key)
    if not generation then
        generation = ARGV[1]
        redis.call('SET', key, generation, 'EX', ARGV[2])
    end
    if generation == ARGV[2 * i + 2] then
        read[i] = {generation}
    else
        local page = key .. ':' .. generation .. ':' .. ARGV[2 * i + 1]
        read[i] = {generation, redis.call('GET', page), redis.call('PTTL', page)}
    end
end
return read
"""
# ARGV: the generation key prefix, a fresh token, the generation TTL, then six for each read:
# the credential's key and field (see Credential), the user this process expects it to name,
# the generation key's suffix, the page name, and the generation of this process's copy.
# Returns for each read {} when the credential is not live, else {user, generation} when
# that copy is current, else {user, generation, page or nil, page TTL in ms}.
_READ_AS = """
local read = {}
for i = 4, #ARGV, 6 do
    local user
    if ARGV[i + 1] == '' then
        user = redis.call('GET', ARGV[i])
    else
        user = redis.call('HGET', ARGV[i], ARGV[i + 1])
    end
    if not user then
        read[#read + 1] = {}
    else
        local key = ARGV[1] .. user .. ARGV[i + 3]
        local generation = redis.call('GET', key)
        if not generation then
            generation = ARGV[2]
            redis.call('SET', key, generation, 'EX', ARGV[3])
        end
        if user == ARGV[i + 2] and generation == ARGV[i + 5] then
            read[#read + 1] = {user, generation}
        else
            local page = key .. ':' .. generation .. ':' .. ARGV[i + 4]
            read[#read + 1] = {user, generation, redis.call('GET', page), redis.call('PTTL', page)}
        end
    end
end
return read
"""
#: A page's generation key and name.
_Slot = tuple[str, str]
#: A read on behalf of a credential: its key and field, the user expected, the suffix, the name.
_OwnedSlot = tuple[str, str, str, str, str]


@dataclass(frozen=True, slots=True)
class _Read:
    """A slot's current generation; ``fetched`` unless this process's copy is current: the
    page stored under it (None: none) and that page's TTL in seconds."""

    generation: bytes
    fetched: tuple[bytes | None, float] | None


@dataclass(frozen=True, slots=True)
class Checked:
    """A read on behalf of a credential: whose it is (None: not live), and the page if held."""

    user_id: uuid.UUID | None
    page: Page | None
    generation: bytes = b""


@dataclass(frozen=True, slots=True)
class Page:
    """A finished response body, and the cursor of the page after it ("": none).

    Kept as it is written to the client, so that a hit sends it without a copy.
    """

    body: bytes
    cursor: str = ""

    def framed(self) -> bytes:
        """As Redis holds it: the cursor, a newline, the body."""
        return self.cursor.encode() + b"\n" + self.body

    @classmethod
    def unframed(cls, framed: bytes) -> Page:
        # Compact JSON never holds a raw newline, so the first one ends the cursor.
        cursor, _, body = framed.partition(b"\n")
        return cls(body, cursor.decode())


@dataclass(frozen=True, slots=True)
class _Copy:
    generation: bytes
    page: Page
    expires: float


class _LocalPages:
    """The pages this process served last, one per page name, least recently used out first.

    A copy is served only once Redis confirms its generation is still current,
    and never past the TTL of the Redis page it copies: it changes the cost of a
    hit, not what a hit may return.
    """

    def __init__(self, capacity: int) -> None:
        self._copies: OrderedDict[str, _Copy] = OrderedDict()
        self._size = 0
        self._capacity = capacity

    def generation(self, slot: str) -> bytes:
        """The generation of the live copy in ``slot``; empty when there is none."""
        copy = self._copies.get(slot)
        return b"" if copy is None or copy.expires <= time.monotonic() else copy.generation

    def get(self, slot: str, generation: bytes) -> Page | None:
        copy = self._copies.get(slot)
        if copy is None or copy.generation != generation:
            return None
        self._copies.move_to_end(slot)
        return copy.page

    def put(self, slot: str, generation: bytes, page: Page, ttl: float) -> None:
        if (old := self._copies.pop(slot, None)) is not None:
            self._size -= len(old.page.body)
        self._copies[slot] = _Copy(generation, page, time.monotonic() + ttl)
        self._size += len(page.body)
        while self._size > self._capacity:
            _, evicted = self._copies.popitem(last=False)
            self._size -= len(evicted.page.body)


class JournalCache:
    """Pages of a user's journals (``reference``) or of their entry list (``reference=None``).

    With ``checks_credentials`` (the cache shares the Redis that holds logins and
    sessions), :meth:`read_as` checks the caller's credential in the page's own
    script: a hit costs one round trip, shared with the concurrent reads.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str,
        ttl: int,
        timeout: float,
        retry: float,
        enabled: bool = True,
        checks_credentials: bool = False,
    ) -> None:
        self._client = client
        self._prefix = f"{prefix}journal:"
        self._ttl = ttl
        self._timeout = timeout
        self._retry = retry
        self._enabled = enabled
        self._read = client.register_script(_READ)
        self._reads: Batcher[_Slot, _Read | None] = Batcher(self._read_round, default=None)
        self._read_as = client.register_script(_READ_AS) if checks_credentials else None
        self._owned_reads: Batcher[_OwnedSlot, Checked | None] = Batcher(
            self._owned_round, default=None
        )
        self._owners: dict[str, str] = {}  # credential key → the user it named last
        self._filling: dict[str, asyncio.Future[Page | None]] = {}  # single-flight
        self._local = _LocalPages(_LOCAL_BYTES)
        self._dirty: set[str] = set()  # generations whose renewal has not reached Redis
        self._down_until = 0.0

    async def page(
        self,
        user_id: uuid.UUID,
        reference: str | None,
        name: str,
        load: Load,
    ) -> tuple[Page | None, Outcome]:
        """The page ``name`` from the cache, else from ``load`` (None is returned, not cached)."""
        if not self._enabled or not await self._drop_dirty():
            return await load(), "bypass"
        generation_key = self._generation_key(user_id, reference)
        slot = f"{generation_key}:{name}"
        try:  # bounded by the timeouts of the call in flight and of the next one, its own
            read = await self._reads.get((generation_key, name))
        except (redis.RedisError, OSError, TimeoutError) as exc:
            self._failed("read", exc)
            return await load(), "bypass"
        assert read is not None  # every slot asked is read
        generation = read.generation
        if read.fetched is None and (copy := self._local.get(slot, generation)) is not None:
            return copy, "hit"
        if read.fetched is not None and (cached := read.fetched[0]) is not None:
            page = Page.unframed(cached)
            self._local.put(slot, generation, page, read.fetched[1])
            return page, "hit"
        return await self._fill(generation_key, name, generation, load), "miss"

    async def read_as(
        self, credential: Credential, reference: str | None, name: str
    ) -> Checked | None:
        """Whose ``credential`` is while it is live, and the page ``name`` of their journal
        ``reference`` when the cache holds it, in one batched script call.

        None when the cache cannot answer (off, on a Redis of its own, or failing):
        authenticate and use :meth:`page` instead. A :class:`Checked` without a page
        is a miss: load it with :meth:`fill`.
        """
        if self._read_as is None or not self._enabled or not await self._drop_dirty():
            return None
        claimed = credential.claimed
        expected = str(claimed) if claimed is not None else self._owners.get(credential.key, "")
        suffix = f":{reference or 'entries'}"
        try:
            checked = await self._owned_reads.get(
                (credential.key, credential.field, expected, suffix, name)
            )
        except (redis.RedisError, OSError, TimeoutError) as exc:
            self._failed("read", exc)
            return None
        assert checked is not None  # every slot asked is read
        if claimed is not None and checked.user_id != claimed:
            return Checked(None, None)  # a login names the token's user, or it is not this one
        return checked

    async def fill(
        self, checked: Checked, reference: str | None, name: str, load: Load
    ) -> Page | None:
        """The page a :meth:`read_as` missed, loaded once and stored under its generation."""
        assert checked.user_id is not None  # a refused credential loads nothing
        generation_key = self._generation_key(checked.user_id, reference)
        return await self._fill(generation_key, name, checked.generation, load)

    async def invalidate(self, journals: Iterable[tuple[uuid.UUID, str]]) -> None:
        """Drop the generations of the journals and their owners' entry lists (the next
        readers mint new ones); never raises, and waits at most the cache's timeout."""
        for user_id, reference in journals:
            self._dirty.add(self._generation_key(user_id, reference))
            self._dirty.add(self._generation_key(user_id, None))
        await self._drop_dirty()

    def listener(self) -> Listener:
        """A JournalActor listener: invalidates after each commit, before writers are answered.

        An invalidation that misses Redis stays dirty and is delivered before the next read.
        """

        async def on_change(event: JournalChanged) -> None:
            if self._enabled:
                await self.invalidate(event.journals)

        return on_change

    async def _read_round(self, slots: list[_Slot]) -> dict[_Slot, _Read]:
        """One script call for the slots of the reads asked since the last one started."""
        args: list[str | int | bytes] = [secrets.token_hex(8), _GENERATION_TTL]
        for generation_key, name in slots:
            args += [name, self._local.generation(f"{generation_key}:{name}")]
        async with asyncio.timeout(self._timeout):
            read = await self._read(keys=[key for key, _ in slots], args=args)
        return {
            slot: _Read(generation, (fetched[0], fetched[1] / 1000) if fetched else None)
            for slot, (generation, *fetched) in zip(slots, read, strict=True)
        }

    async def _owned_round(self, slots: list[_OwnedSlot]) -> dict[_OwnedSlot, Checked]:
        """One script call for the credential-checked reads asked since the last one started."""
        assert self._read_as is not None  # only asked when there is a script
        args: list[str | int | bytes] = [self._prefix, secrets.token_hex(8), _GENERATION_TTL]
        for key, field, expected, suffix, name in slots:
            held = self._local.generation(f"{self._prefix}{expected}{suffix}:{name}")
            args += [key, field, expected, suffix, name, held]
        async with asyncio.timeout(self._timeout):
            read = await self._read_as(args=args)
        return {slot: self._checked(slot, found) for slot, found in zip(slots, read, strict=True)}

    def _checked(self, slot: _OwnedSlot, found: list[bytes | int | None]) -> Checked:
        if not found:
            return Checked(None, None)
        key, _, _, suffix, name = slot
        owner, generation, *fetched = found
        assert isinstance(owner, bytes)
        assert isinstance(generation, bytes)
        user = owner.decode()
        copy = f"{self._prefix}{user}{suffix}:{name}"
        if len(self._owners) >= _OWNERS and key not in self._owners:
            del self._owners[next(iter(self._owners))]  # the oldest
        self._owners[key] = user
        if not fetched:  # this process's copy, confirmed current
            page = self._local.get(copy, generation)
        elif isinstance(stored := fetched[0], bytes):
            page = Page.unframed(stored)
            assert isinstance(fetched[1], int)
            self._local.put(copy, generation, page, fetched[1] / 1000)
        else:
            page = None
        return Checked(uuid.UUID(user), page, generation)

    async def _fill(
        self,
        generation_key: str,
        name: str,
        generation: bytes,
        load: Load,
    ) -> Page | None:
        """Load and store a missing page once, however many readers want it meanwhile.

        The load runs in a task of its own, so a reader that goes away does not
        cancel it for the others.
        """
        key = f"{generation_key}:{generation.decode()}:{name}"
        filling = self._filling.get(key)
        if filling is None:
            filling = asyncio.ensure_future(
                self._load_and_store(key, f"{generation_key}:{name}", generation, load)
            )
            self._filling[key] = filling
            filling.add_done_callback(lambda done: self._filled(key, done))
        return await asyncio.shield(filling)

    def _filled(self, key: str, done: asyncio.Future[Page | None]) -> None:
        del self._filling[key]
        if not done.cancelled():
            done.exception()  # retrieved here: a failure reaches every waiter, never the log

    async def _load_and_store(
        self, key: str, slot: str, generation: bytes, load: Load
    ) -> Page | None:
        value = await load()
        if value is None:
            return None
        ttl = max(1, round(self._ttl * random.uniform(1 - _JITTER, 1 + _JITTER)))
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.set(key, value.framed(), ex=ttl)
        except (redis.RedisError, OSError, TimeoutError) as exc:
            self._failed("write", exc)
        else:
            self._local.put(slot, generation, value, ttl)
        return value

    async def _drop_dirty(self) -> bool:
        """Push pending invalidations; False while Redis cannot be trusted or reached."""
        if time.monotonic() < self._down_until:
            return False
        if not self._dirty:
            return True
        dropping = set(self._dirty)
        try:
            async with asyncio.timeout(self._timeout):
                await self._client.delete(*dropping)  # the next reader mints a fresh token
        except (redis.RedisError, OSError, TimeoutError) as exc:
            self._failed("invalidation", exc)
            return False
        self._dirty -= dropping
        return True

    def _failed(self, what: str, exc: BaseException) -> None:
        if time.monotonic() >= self._down_until:
            log.warning("journal cache %s failed, bypassing for %gs: %r", what, self._retry, exc)
        self._down_until = time.monotonic() + self._retry

    def _generation_key(self, user_id: uuid.UUID, reference: str | None) -> str:
        return f"{self._prefix}{user_id}:{reference or 'entries'}"
