"""1. Throughput with one worker and with two, and who spent the cores."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlsplit

import aiohttp

from bench.chat import TURNS_PER_USER, USERS, rest_workloads
from bench.chat_socket import socket_workloads
from bench.stats import Summary

from ._servers import CpuMeter, Deployment, forwarded_commands


async def throughput(deployment: Deployment, session: aiohttp.ClientSession) -> list[Summary]:
    results: dict[tuple[str, int], list[Summary]] = {}
    database = urlsplit(deployment.dsn).path.lstrip("/")
    for workers in (1, 2):
        [server] = await deployment.start(session, f"workers{workers}", workers=workers)
        for transport in ("chat", "chat-ws"):
            forwarded = await forwarded_commands(server, workers)
            meter = CpuMeter([server], database)
            label, key = f"cluster {transport} w{workers}", f"cluster.{transport}.w{workers}"
            if transport == "chat":
                summaries = await rest_workloads(
                    server.url, deployment.dsn, label=label, key=key, around_many=meter.measure
                )
            else:
                summaries = await socket_workloads(
                    session,
                    server.url,
                    deployment.dsn,
                    label=label,
                    key=key,
                    around_many=meter.measure,
                )
            forwarded = await forwarded_commands(server, workers) - forwarded
            *head, many = summaries
            notes = {
                **many.notes,
                **meter.notes(USERS * TURNS_PER_USER),
                "commands forwarded between workers": forwarded,
            }
            many = replace(many, notes=notes)
            results[transport, workers] = [*head, many]
            print(
                f"{many.name}: {many.per_second:.1f} turns/s, p50 {many.p50_ms:.1f} ms, "
                f"{forwarded:g} commands forwarded between workers"
            )
        await deployment.stop(server)
    ordered: list[Summary] = []
    for transport in ("chat", "chat-ws"):
        one, two = results[transport, 1], results[transport, 2]
        ratio = two[-1].per_second / one[-1].per_second
        print(f"cluster {transport}: {USERS} users' turns/s, 2 workers / 1 worker = {ratio:.2f}x")
        two[-1] = replace(two[-1], notes={**two[-1].notes, "2 workers / 1 worker (x)": ratio})
        ordered += one + two
    return ordered


# -- 2. event lag across instances --------------------------------------------------------
