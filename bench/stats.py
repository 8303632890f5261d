"""Latency summaries: the figures every benchmark prints, and their ratio to reference figures.

Every number a :class:`Summary` prints is a *figure* named ``<key>.<figure>``:
``key`` is the summary's stable id (its name, slugged, unless given) and
``figure`` one of :data:`FIGURES` or a note's name, slugged
(``per connection (KiB)`` is ``per_connection_kib``); ``per_s`` and any
``<unit>_per_s`` (``turns_per_s``) name ``per_second``. ``--reference
chat.many.turns_per_s=25.5`` then prints the ratio beside that figure, so
a run reads directly against another system's published numbers.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

#: The figures of every summary besides its notes.
FIGURES = (
    "count",
    "concurrency",
    "seconds",
    "per_second",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "errors",
)
#: Figure name endings for which less is better (times, sizes, errors): their ratio to a
#: reference is reference / ours, so that above 1 always means better than the reference.
_LOWER_IS_BETTER = ("_ms", "_s", "seconds", "_kib", "_mib", "errors")


def slug(text: str) -> str:
    """``chat 1 user (first chunk)`` → ``chat_1_user_first_chunk``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def canonical_figure(name: str) -> str:
    """The figure a reference names: ``turns_per_s`` and ``per_s`` are ``per_second``."""
    return "per_second" if name == "per_s" or name.endswith("_per_s") else name


def ratio_to_reference(figure: str, ours: float, reference: float) -> float:
    """Above 1 is better than the reference: ours/reference for throughput-like figures,
    reference/ours for latencies, durations, sizes and errors."""
    numerator, denominator = (
        (reference, ours) if figure.endswith(_LOWER_IS_BETTER) else (ours, reference)
    )
    if denominator == 0 or math.isnan(denominator) or math.isnan(numerator):
        return math.nan
    return numerator / denominator


@dataclass(frozen=True, slots=True)
class Reference:
    """One figure of ours beside a reference value for it."""

    figure: str
    ours: float
    reference: float
    ratio: float

    def text(self) -> str:
        return f"ratio to reference: {self.ratio:.1f}x (reference {self.reference:,.2f})"


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
    #: The id ``--reference`` names this summary's figures by; empty: the name, slugged.
    key: str = ""

    @property
    def reference_key(self) -> str:
        return self.key or slug(self.name)

    def figures(self) -> dict[str, float]:
        """Every number this summary prints, by figure name."""
        values: dict[str, float] = {name: getattr(self, name) for name in FIGURES}
        values.update({slug(note): value for note, value in self.notes.items()})
        return values

    def references(self, given: Mapping[str, float]) -> dict[str, Reference]:
        """The reference values of ``given`` (``<key>.<figure>`` → value) that name one of
        this summary's figures, by their full name."""
        prefix, figures = f"{self.reference_key}.", self.figures()
        found = {}
        for full_name, reference in given.items():
            if not full_name.startswith(prefix):
                continue
            figure = canonical_figure(full_name.removeprefix(prefix))
            if figure in figures:
                ours = figures[figure]
                found[full_name] = Reference(
                    figure, ours, reference, ratio_to_reference(figure, ours, reference)
                )
        return found

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def line(self, references: Mapping[str, float] | None = None) -> str:
        """The figures as text; with ``references``, each named figure's ratio beside it."""
        by_figure = {ref.figure: ref for ref in self.references(references or {}).values()}
        text = (
            f"{self.name:<28} n={self.count:<7} c={self.concurrency:<4} "
            f"{self.per_second:>9.1f}/s  p50 {self.p50_ms:>7.2f} ms  p95 {self.p95_ms:>7.2f} ms  "
            f"p99 {self.p99_ms:>7.2f} ms  max {self.max_ms:>7.2f} ms  errors {self.errors}"
        )
        for figure in FIGURES:
            if figure in by_figure:
                ours = by_figure[figure].ours
                text += f"\n    {figure} {ours:,.2f}: {by_figure[figure].text()}"
        for note, value in self.notes.items():
            text += f"\n    {note}: {value:,.1f}"
            if (ref := by_figure.get(slug(note))) is not None:
                text += f"  {ref.text()}"
        return text


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
    key: str = "",
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
        key=key,
    )
