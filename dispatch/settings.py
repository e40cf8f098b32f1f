"""Dispatch tunables (from ``TOT_*`` settings; defaults are the product's starting values)."""

from __future__ import annotations

from dataclasses import dataclass, field

from dispatch.ranking import RankingSettings


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    """Times in seconds, distances in metres.

    ``rings_m``: search radii tried in order before escalating. ``broadcast_k``: how many doctors an
    emergency is offered to at once. ``max_offers``: offers per call before it escalates anyway (a call
    nobody takes needs a human). ``candidate_max_age_s``: positions older than this are not candidates.
    ``planned_lead_s``: a planned call starts dispatching this long before its time.
    ``visit_estimate_s``: how long a visit is taken to last when a non-emergency call is weighed
    against a doctor's booked visits (``TOT_VISIT_ESTIMATE_MIN``, dispatch/planned_dispatch.py).
    ``step_retry_s``: when the process running a dispatch step it started itself dies, another takes
    the call over after this long (a step the dead process had claimed from the queue comes back when
    the Deadlines lease ends, 30 s).
    """

    offer_timeout_s: float = 15.0
    rings_m: tuple[float, ...] = (2_000.0, 5_000.0, 10_000.0, 20_000.0)
    broadcast_k: int = 3
    max_offers: int = 10
    candidate_max_age_s: int = 60
    planned_lead_s: float = 3_600.0
    step_retry_s: float = 10.0
    visit_estimate_s: float = 3_600.0
    ranking: RankingSettings = field(default_factory=RankingSettings)
