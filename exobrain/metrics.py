"""Prometheus metrics, one registry per application (tests build many apps per process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    """Every metric the service exports; thread-safe, so actors observe directly."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "http_requests_total",
            "HTTP requests by route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request handling time by route.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.actor_mailbox = Gauge(
            "actor_mailbox_depth",
            "Messages waiting in an actor's mailbox, at scrape time.",
            ["actor"],
            registry=self.registry,
        )
        self.actor_restarts = Gauge(
            "actor_restarts",
            "Restarts of a supervised actor since the process started.",
            ["actor"],
            registry=self.registry,
        )
        self.actor_up = Gauge(
            "actor_up",
            "1 when the supervised actor is running, 0 otherwise.",
            ["actor"],
            registry=self.registry,
        )
        self.journal_batch_size = Histogram(
            "journal_batch_size",
            "Append commands written per journal transaction.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.journal_commit_seconds = Histogram(
            "journal_commit_seconds",
            "Time to write and commit one journal batch.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.websocket_connections = Gauge(
            "websocket_connections",
            "Open WebSocket connections.",
            registry=self.registry,
        )
        self.chat_forwarded = Counter(
            "chat_forwarded_commands_total",
            "Chat commands sent to the instance owning the user, by command.",
            ["command"],
            registry=self.registry,
        )
        self.chat_leases_acquired = Counter(
            "chat_leases_acquired_total",
            "User leases this instance acquired (each starts an ownership epoch).",
            registry=self.registry,
        )
        self.chat_leases_lost = Counter(
            "chat_leases_lost_total",
            "User leases this instance lost while it still held them.",
            registry=self.registry,
        )
        self.chat_leases_held = Gauge(
            "chat_leases_held",
            "Users this instance owns, at scrape time.",
            registry=self.registry,
        )
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.chat_log_publish = Histogram(
            "chat_log_publish_seconds",
            "From publishing a chat log message to JetStream's acknowledgement.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count and time one HTTP request.

        ``labels()`` checks and locks on every call (a tenth of a cached page's
        cost); a request's children are looked up once and kept here by their labels.
        """
        children = self._request_children.get((method, route, status))
        if children is None:  # two threads racing here get the same children from labels()
            children = (
                self.http_requests.labels(method, route, str(status)),
                self.http_latency.labels(method, route),
            )
            self._request_children[method, route, status] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_tree(self, tree: dict[str, Any], prefix: str = "") -> None:
        """Set the actor gauges from a supervisor snapshot."""
        path = f"{prefix}{tree['name']}"
        for child in tree.get("children") or ():
            child_path = f"{path}/{child['name']}"
            self.actor_mailbox.labels(child_path).set(child["mailbox"])
            self.actor_restarts.labels(child_path).set(child["restarts"])
            self.actor_up.labels(child_path).set(1 if child["state"] == "running" else 0)
            if child.get("children"):
                self.observe_tree(child, prefix=f"{path}/")

    def render(self) -> bytes:
        return generate_latest(self.registry)
