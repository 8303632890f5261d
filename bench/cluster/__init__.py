"""The service as a cluster, on servers this benchmark starts itself.

python -m bench cluster --dsn postgresql://postgres@127.0.0.1:5432/bench_cluster

Redis at ``$EXOBRAIN_BENCH_REDIS_URL`` (default redis://127.0.0.1:6379/0),
NATS at ``$EXOBRAIN_NATS_URL`` (default nats://127.0.0.1:4222). Every server is
``python -m exobrain serve`` in a directory of its own under a temp dir (no
``.env`` is read there; its stdout and stderr are files there, and the path is
printed if the run fails), with the mock agent and a Redis key prefix and
JetStream names of this run's own, removed at the end. Servers are stopped with
SIGTERM, then SIGKILL, whatever happens, and die with this process (Linux
``PR_SET_PDEATHSIG``).

1. **Throughput**: the ``chat`` and ``chat-ws`` workloads (bench/chat.py)
   against ``--workers 1``, then ``--workers 2``, and the ratio of their
   50-user turns/s, with every party's CPU per turn over that workload, so a
   ratio short of 2 can be traced to who spent the cores.
2. **Event lag across instances**: A owns the users (turns sent through A,
   the mock paced), each user has a socket on A and one on B. Frames carry no
   producer time, so an event's lag is its arrival on B minus the arrival of
   the same ``(stream_id, seq)`` on A's socket, the owner's own fast path: it
   is relative to that socket, not to the moment the owner produced it.
3. **Fail-over**, for two lease TTLs, on a fresh pair A and B per trial: a
   paced long turn owned by A, followed over SSE on B; A is killed with
   SIGKILL; the time from the kill to that stream's ``done`` on B, to the
   ``done`` of the user's next message sent through B at once (503 retried
   with the same ``client_message_id``), and to the ``done`` of another user
   of A whose message goes through B LATER_SEND s after the kill.

Servers log at INFO with ACCESS_LOG=false, as a production instance would.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import aiohttp
import psutil

from bench.registry import Options, benchmark
from bench.stats import Summary, summarize

from ._failover import failover
from ._lag import event_lag
from ._servers import Deployment
from ._throughput import throughput


@benchmark("cluster")
async def cluster(session: aiohttp.ClientSession, options: Options) -> list[Summary]:
    """Throughput with 1 and 2 workers, event lag across instances, fail-over after kill -9."""
    if options.dsn is None:
        raise SystemExit("the cluster benchmark needs --dsn (a database it may fill)")
    root = Path(tempfile.mkdtemp(prefix="exobrain-bench-cluster-"))
    deployment = Deployment(
        root,
        options.dsn,
        os.environ.get("EXOBRAIN_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        os.environ.get("EXOBRAIN_NATS_URL", "nats://127.0.0.1:4222"),
    )
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"cluster: {psutil.cpu_count()} cores, load average {load}; servers' files in {root}")
    results: list[Summary] = []
    phases = {"throughput": throughput, "event_lag": event_lag, "failover": failover}
    try:
        await deployment.migrate()
        for phase, run in phases.items():
            try:
                results += await run(deployment, session)
            except (RuntimeError, TimeoutError, OSError, aiohttp.ClientError) as exc:
                print(f"cluster: {phase} failed: {exc!r}", file=sys.stderr)
                await deployment.stop(*deployment.servers)  # none may weigh on the next phase
                failed = f"cluster {phase} FAILED"
                key = f"cluster.{phase}"
                results.append(summarize(failed, [], concurrency=0, seconds=0, errors=1, key=key))
    except BaseException:
        print(f"cluster: failed; the servers' output is in {root}", file=sys.stderr)
        raise
    finally:
        await deployment.close()
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"cluster: load average at the end {load}")
    if any(summary.errors for summary in results):
        print(f"cluster: errors; the servers' output is in {root}", file=sys.stderr)
    else:
        shutil.rmtree(root, ignore_errors=True)
    return results
