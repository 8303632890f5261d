"""3. Fail-over after kill -9 of the owner, for two lease TTLs."""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.chat import create_users, login
from bench.stats import Summary, summarize
from exobrain.agent.mock import SEPARATOR

from ._servers import TURN_TIMEOUT, Deployment, Server, owned, user_ids

#: Fail-over: lease TTLs tried, trials of each, the pace, and the chunks B must have
#: seen before the kill (the turn is under way and followed from B).
FAILOVER_TTLS, FAILOVER_TRIALS, FAILOVER_WORDS_PER_SECOND, FAILOVER_SEEN = (2.0, 5.0), 4, 50, 5
#: The mock's replies in the fail-over: A answers short, long (about 12 s at the pace),
#: short...: the first user's warm-up, the turn cut short, the second user's warm-up;
#: B answers only short ones. The second user's message goes through B this long after
#: the kill, when NATS knows A is gone (a command sent to A before it does waits for the
#: whole forwarding timeout).
LATER_SEND = 0.25
SHORT_REPLY = "Noted, thanks."
LONG_REPLY = " ".join(f"word{n}" for n in range(600))


@dataclass
class _Sse:
    """``GET /api/chat/stream/{id}`` read as it arrives: (seq, event, data, arrival)."""

    events: list[tuple[int, str, dict[str, Any], float]] = field(default_factory=list)
    status: int = 0

    async def read(
        self, session: aiohttp.ClientSession, url: str, headers: Mapping[str, str]
    ) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
        async with session.get(url, headers=headers, timeout=timeout) as response:
            self.status = response.status
            if response.status != 200:
                raise RuntimeError(f"GET {url}: {response.status} {await response.text()}")
            fields: dict[str, str] = {}
            async for raw in response.content:
                line = raw.decode().rstrip("\r\n")
                if line and not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    fields[name] = value
                elif "data" in fields:
                    event = fields.get("event", "message")
                    data = orjson.loads(fields["data"])
                    self.events.append((int(fields["id"]), event, data, time.perf_counter()))
                    if event == "done":
                        return
                    fields = {}
        raise RuntimeError(f"{url} ended without done")

    def chunks(self) -> int:
        return sum(event == "message_chunk" for _, event, _, _ in self.events)


async def _post(
    session: aiohttp.ClientSession, server: Server, headers: Mapping[str, str], cid: str
) -> tuple[str, int]:
    """Send until accepted, retrying 429, 503 and broken connections with the same
    ``client_message_id``; the stream id and the retries it took."""
    body = {"message": "Hello again", "client_message_id": cid}
    deadline, retries = time.monotonic() + TURN_TIMEOUT, 0
    while True:
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            async with session.post(
                f"{server.url}/api/chat/message", json=body, headers=headers
            ) as response:
                if response.status == 200:
                    return str((await response.json())["stream_id"]), retries
                if response.status not in (429, 503):
                    raise RuntimeError(f"POST refused: {response.status} {await response.text()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"POST not accepted in {TURN_TIMEOUT:g} s")
        retries += 1
        await asyncio.sleep(0.1)


async def _follow(
    session: aiohttp.ClientSession, server: Server, headers: Mapping[str, str], stream_id: str
) -> _Sse:
    sse = _Sse()
    await asyncio.wait_for(
        sse.read(session, f"{server.url}/api/chat/stream/{stream_id}", headers), TURN_TIMEOUT
    )
    return sse


@dataclass(frozen=True, slots=True)
class _Trial:
    done: float  # kill → the cut-short stream's done on B
    error_first: bool  # an error event came before that done
    accepted: float  # kill → the next message accepted through B
    retries: int
    next_done: float  # kill → the next message's done on B
    later_done: float  # kill → the done of another user's message, sent LATER_SEND s after


async def _turn_after_kill(
    session: aiohttp.ClientSession, b: Server, headers: Mapping[str, str], killed: float
) -> tuple[float, int, float]:
    """A message through B once A is dead: (accepted, retries, its done), from the kill."""
    stream_id, retries = await _post(session, b, headers, str(uuid.uuid4()))
    accepted = time.perf_counter() - killed
    answer = await _follow(session, b, headers, stream_id)
    return accepted, retries, answer.events[-1][3] - killed


async def _one_failover(
    deployment: Deployment, session: aiohttp.ClientSession, ttl: float, replies: Path
) -> _Trial:
    """A owns two users: one in a long turn that B follows, one idle. A is killed; the
    first user's next message goes through B at once, the other's LATER_SEND s later."""
    common = {
        "CHAT_LEASE_TTL_SECONDS": f"{ttl:g}",
        "MAIN_AGENT_MOCK_WORDS_PER_SECOND": str(FAILOVER_WORDS_PER_SECOND),
    }
    a, b = (
        deployment.launch(
            f"failover{ttl:g}-{name}",
            settings={**common, "MAIN_AGENT_MOCK_MESSAGES_FILE": str(replies / f"{name}.md")},
        )
        for name in ("a", "b")
    )
    cleanup: list[asyncio.Task[Any]] = []
    try:
        await deployment.ready(session, a, b)
        emails = await create_users(deployment.dsn, 2)
        headers = [await login(session, a.url, email) for email in emails]
        warm_up, _ = await _post(session, a, headers[0], str(uuid.uuid4()))
        await _follow(session, a, headers[0], warm_up)  # A's replies: short, then long
        stream_id, _ = await _post(session, a, headers[0], str(uuid.uuid4()))
        on_b = _Sse()
        url = f"{b.url}/api/chat/stream/{stream_id}"
        following = asyncio.create_task(asyncio.wait_for(on_b.read(session, url, headers[0]), 120))
        cleanup.append(following)
        deadline = time.monotonic() + 10
        while on_b.chunks() < FAILOVER_SEEN:
            if following.done() or time.monotonic() > deadline:
                await following
                raise RuntimeError(f"B saw {on_b.chunks()} chunks of the turn")
            await asyncio.sleep(0.005)
        warm_up, _ = await _post(session, a, headers[1], str(uuid.uuid4()))
        await _follow(session, a, headers[1], warm_up)  # short again
        if not await user_ids(deployment.dsn, emails) <= await owned(session, a):
            raise RuntimeError("A does not own both users after their turns")
        killed = time.perf_counter()
        a.kill()
        at_once = asyncio.create_task(_turn_after_kill(session, b, headers[0], killed))
        cleanup.append(at_once)
        await asyncio.sleep(LATER_SEND)
        _, _, later_done = await _turn_after_kill(session, b, headers[1], killed)
        accepted, retries, next_done = await at_once
        await following
    finally:
        for task in cleanup:
            task.cancel()
        await deployment.stop(a, b)
    names = [event for _, event, _, _ in on_b.events]
    return _Trial(
        done=on_b.events[-1][3] - killed,
        error_first=len(names) > 1 and names[-2] == "error",
        accepted=accepted,
        retries=retries,
        next_done=next_done,
        later_done=later_done,
    )


async def failover(deployment: Deployment, session: aiohttp.ClientSession) -> list[Summary]:
    replies = deployment.root / "replies"
    replies.mkdir()
    (replies / "a.md").write_text(SEPARATOR.join([SHORT_REPLY, LONG_REPLY]) + "\n")
    (replies / "b.md").write_text(SHORT_REPLY + "\n")
    results = []
    for ttl in FAILOVER_TTLS:
        trials: list[_Trial] = []
        failures = 0
        for n in range(1, FAILOVER_TRIALS + 1):
            try:
                trial = await _one_failover(deployment, session, ttl, replies)
            except (RuntimeError, TimeoutError, aiohttp.ClientError) as exc:
                failures += 1
                print(f"cluster fail-over TTL {ttl:g} s trial {n}: failed: {exc!r}")
                continue
            trials.append(trial)
            print(
                f"cluster fail-over TTL {ttl:g} s trial {n}: kill → done on B {trial.done:.2f} s"
                f" ({'error, then done' if trial.error_first else 'NO error before done'});"
                f" next message through B at once: accepted {trial.accepted:.2f} s"
                f" ({trial.retries} retries), done {trial.next_done:.2f} s;"
                f" another user's {LATER_SEND:g} s after the kill: done {trial.later_done:.2f} s"
            )
        name, key = f"cluster fail-over TTL {ttl:g}s", f"cluster.failover.ttl{ttl:g}"
        accepted = statistics.median([t.accepted for t in trials] or [math.nan])
        missing_error = sum(not t.error_first for t in trials)
        results += [
            _trials(
                f"{name} kill->done on B",
                f"{key}.done",
                [t.done for t in trials],
                errors=failures + missing_error,
            ),
            _trials(
                f"{name} kill->next done",
                f"{key}.next_done",
                [t.next_done for t in trials],
                errors=failures,
                notes={
                    "accepted after kill, median (s)": accepted,
                    "POST retries (503)": sum(t.retries for t in trials),
                },
            ),
            _trials(
                f"{name} kill->other user done (+{LATER_SEND:g}s)",
                f"{key}.later_done",
                [t.later_done for t in trials],
                errors=failures,
            ),
        ]
    return results


def _trials(
    name: str, key: str, values: list[float], *, errors: int, notes: dict[str, float] | None = None
) -> Summary:
    """Trials' durations (seconds) as a summary: median as p50, and each trial as a note."""
    each = {f"trial {n} (s)": value for n, value in enumerate(values, 1)}
    return summarize(
        name,
        values,
        concurrency=1,
        seconds=sum(values),
        errors=errors,
        notes={**each, **(notes or {})},
        key=key,
    )


# -- the benchmark ------------------------------------------------------------------------
