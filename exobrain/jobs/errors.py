"""The two ways an enqueue can fail: for good, or for now."""

from __future__ import annotations


class InvalidJob(ValueError):
    """The request can never succeed (gRPC ``INVALID_ARGUMENT``): do not retry it."""


class EnqueueUnavailable(ConnectionError):
    """The orchestrator or JetStream did not answer in time: retry later with the same key."""
