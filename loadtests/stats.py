"""Latency summaries for the benchmarks: percentiles of samples in milliseconds."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any


def percentile(ordered: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ascending ``ordered`` by the nearest-rank method (the
    smallest sample with at least q% of the samples at or below it: a real sample, never an
    interpolation). Raises ``ValueError`` when there are no samples."""
    if not ordered:
        raise ValueError("no samples")
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class Summary:
    """Samples in milliseconds: count, median, 90th and 99th percentile, maximum, mean."""

    n: int
    p50: float
    p90: float
    p99: float
    max: float
    mean: float

    def as_json(self) -> dict[str, Any]:
        return {
            key: round(value, 3) if isinstance(value, float) else value for key, value in asdict(self).items()
        }

    def cells(self) -> str:
        """``p50 p90 p99 max`` right-aligned in 9 characters each, ms with one decimal."""
        return "".join(f"{v:>9.1f}" for v in (self.p50, self.p90, self.p99, self.max))


def summarize(samples_ms: Iterable[float]) -> Summary | None:
    """A :class:`Summary` of the samples (milliseconds); None when there are none."""
    ordered = sorted(samples_ms)
    if not ordered:
        return None
    return Summary(
        n=len(ordered),
        p50=percentile(ordered, 50),
        p90=percentile(ordered, 90),
        p99=percentile(ordered, 99),
        max=ordered[-1],
        mean=sum(ordered) / len(ordered),
    )
