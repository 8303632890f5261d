"""Commands the KnowledgeDispatchActor accepts and the result it replies."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from exobrain.jobs import job_id_for
from exobrain.supervision import LoopFuture

from .store import Outcome

_REFERENCE = re.compile(r"^\d{4}/\d{2}/\d{2}$")

UpdateStatus = Literal["queued", "pending", "nothing_to_update", "rejected"]


@dataclass(frozen=True, slots=True)
class RequestUpdate:
    """Dispatch ``user_id``'s uncommitted messages: all journals, or only ``journal_reference``."""

    user_id: uuid.UUID
    journal_reference: str | None = None

    def __post_init__(self) -> None:
        if self.journal_reference is not None and not _REFERENCE.match(self.journal_reference):
            raise ValueError(
                f"journal_reference must be YYYY/MM/DD, not {self.journal_reference!r}"
            )


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """``pending``: accepted, but some job still waits for the orchestrator; the actor keeps
    retrying it. ``job_ids``: every job not refused, pending ones included (a job's id
    derives from its outbox row, so it is known before the orchestrator answers)."""

    status: UpdateStatus
    job_ids: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()

    @classmethod
    def of(cls, outcomes: Sequence[Outcome]) -> UpdateResult:
        job_ids = tuple(o.job_id or job_id_for(str(o.id)) for o in outcomes if o.status != "failed")
        if any(outcome.status == "pending" for outcome in outcomes):
            return cls("pending", job_ids)
        if job_ids:
            return cls("queued", job_ids)
        return cls("rejected", (), tuple(o.error for o in outcomes if o.error))


@dataclass(frozen=True, slots=True)
class Dispatching:
    """The reply to an update with something to send: its outbox rows are written, so it is
    accepted. ``result`` completes once the orchestrator took, refused or missed each job."""

    job_ids: tuple[str, ...]
    result: LoopFuture[UpdateResult]


@dataclass(frozen=True, slots=True)
class Settled:
    """Told from the loop when a round of enqueues of rows ``ids`` is over.

    ``resumed``: it was a resume round; ``more``: a full batch of them went out,
    so others may be waiting.
    """

    ids: frozenset[uuid.UUID]
    resumed: bool = False
    more: bool = False


@dataclass(frozen=True, slots=True)
class ResumePending:
    """Enqueue outbox rows still pending (told to itself on start, then periodically)."""
