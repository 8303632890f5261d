"""Messages between supervisors and their children: immutable facts and commands."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Failure:
    """Why an incarnation ended: the exception's type and text, and when."""

    at: float
    kind: str
    message: str

    @classmethod
    def of(cls, at: float, exc: BaseException | None) -> Failure:
        if exc is None:
            return cls(at, "Unknown", "")
        return cls(at, type(exc).__name__, str(exc) or type(exc).__name__)


@dataclass(frozen=True, slots=True)
class ChildExited:
    """A child incarnation ended; ``failure`` is None for a normal stop."""

    name: str
    urn: str
    failure: Failure | None


@dataclass(frozen=True, slots=True)
class RestartChild:
    """Start a new incarnation of ``name`` now that its backoff has passed."""

    name: str


@dataclass(frozen=True, slots=True)
class TakeSnapshot:
    """Ask for the subtree's state, for ``/api/ops/actors`` and metrics."""


@dataclass(frozen=True, slots=True)
class StopChildren:
    """Stop every child, newest first, each draining its mailbox, by ``deadline``.

    The deadline is ``time.monotonic()`` based and absolute, so the sender's own
    wait (started first) does not expire before the supervisor's.
    """

    deadline: float
