"""Latency summaries: the figures every benchmark prints."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field


@dataclass(frozen=True, slots=True)
class Summary:
    name: str
    count: int
    concurrency: int
    seconds: float
    per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    #: Figures that are not latencies (memory, ratios), printed after the line.
    notes: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def line(self) -> str:
        return (
            f"{self.name:<28} n={self.count:<7} c={self.concurrency:<4} "
            f"{self.per_second:>9.1f}/s  p50 {self.p50_ms:>7.2f} ms  p95 {self.p95_ms:>7.2f} ms  "
            f"p99 {self.p99_ms:>7.2f} ms  max {self.max_ms:>7.2f} ms  errors {self.errors}"
        ) + "".join(f"\n    {key}: {value:,.1f}" for key, value in self.notes.items())


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


def summarize(
    name: str,
    latencies: list[float],
    *,
    concurrency: int,
    seconds: float,
    errors: int = 0,
    notes: dict[str, float] | None = None,
) -> Summary:
    ordered = sorted(latencies)
    return Summary(
        name=name,
        count=len(ordered),
        concurrency=concurrency,
        seconds=round(seconds, 3),
        per_second=len(ordered) / seconds if seconds > 0 else 0.0,
        p50_ms=statistics.median(ordered) * 1000 if ordered else float("nan"),
        p95_ms=percentile(ordered, 0.95) * 1000,
        p99_ms=percentile(ordered, 0.99) * 1000,
        max_ms=ordered[-1] * 1000 if ordered else float("nan"),
        errors=errors,
        notes=notes or {},
    )
