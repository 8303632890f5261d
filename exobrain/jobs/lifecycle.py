"""A job's lifecycle: its states, the status event, and the subject that carries it.

Shared by the workers that move jobs on and the API that watches them. The
row in ``jobs`` (:mod:`.records`) is the truth; each transition is also
published on ``<prefix>.status.<job_id>`` (core NATS, at most once) so that
watchers hear it at once rather than by polling.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson


class JobState(enum.StrEnum):
    ENQUEUED_OR_PENDING = "ENQUEUED_OR_PENDING"
    STARTED = "STARTED"
    RETRYING = "RETRYING"
    SUCCEEDED = "SUCCEEDED"
    FAILED_FINAL = "FAILED_FINAL"

    @property
    def terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED_FINAL)


@dataclass(frozen=True, slots=True)
class JobStatus:
    """One job's state at one transition; ``version`` orders the transitions of a job."""

    job_id: str
    job_type: str
    user_id: str
    state: JobState
    attempt: int
    detail: str | None
    version: int
    emitted_at: datetime

    def event(self) -> dict[str, Any]:
        """The ``status`` event clients see (DESIGN.md §5)."""
        return {
            "job_id": self.job_id,
            "state": self.state.value,
            "attempt": self.attempt,
            "detail": self.detail,
            "terminal": self.state.terminal,
            "emitted_at": self.emitted_at.isoformat().replace("+00:00", "Z"),
        }

    def encode(self) -> bytes:
        return orjson.dumps(
            self.event() | {"job_type": self.job_type, "user_id": self.user_id, "v": self.version}
        )

    @classmethod
    def decode(cls, data: bytes) -> JobStatus:
        fields = orjson.loads(data)
        return cls(
            job_id=fields["job_id"],
            job_type=fields["job_type"],
            user_id=fields["user_id"],
            state=JobState(fields["state"]),
            attempt=fields["attempt"],
            detail=fields["detail"],
            version=fields["v"],
            emitted_at=datetime.fromisoformat(fields["emitted_at"]),
        )


def status_subject(prefix: str, job_id: str) -> str:
    """Under the jobs' prefix but outside the jobs stream's subjects: core NATS only."""
    return f"{prefix}.status.{job_id}"


def dead_letter_subject(prefix: str, job_type: str) -> str:
    return f"{prefix}.{job_type}.dead"
