"""The replay report's numbers, derived from two sources: the server's record of each call (its event
history and offers, read over REST after the run: server timestamps, so no clock skew) and what the
simulated clients measured themselves (chat and tracking latency, offsets, the server's ``/metrics``).
``docs/replay.md`` explains them field by field.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from loadtests.replay.cleanup import END_REASON
from loadtests.replay.collect import ServerCall
from loadtests.replay.runner import RunResult
from loadtests.replay.stats import Summary

TTFO_TARGET_MS = 50.0
"""The issue's target for time to first offer, p99, milliseconds."""


@dataclass(frozen=True)
class Numbers:
    """The report's numbers. Durations in milliseconds unless named ``_s``; distances in metres."""

    created: int
    create_failed: int
    assigned: int
    escalated: int
    escalated_before_offer: int
    escalated_at_end: int
    relaunched: int
    cancelled: int
    completed: int
    open_at_end: int
    time_to_first_offer_ms: Summary
    time_to_accept_ms: Summary
    distance_m: Summary
    eta_s: Summary
    offers_per_call: Summary
    offer_outcomes: dict[str, int]
    chat_latency_ms: Summary
    tracking_latency_ms: Summary
    sos_raised: int
    sos_ack_ms: Summary
    cpu_percent: Summary
    rss_mb: Summary
    client_loop_lag_ms: Summary
    """The replay process's own event-loop lag: large values mean the load generator was saturated."""
    client_cpu_percent: float
    """The replay process's CPU over the replay and the drain, % of one core."""
    utilisation_on_call: float
    """Mean share of on-shift doctors (not offline) who were offered or on a call."""
    fixes_per_wall_s: float
    calls_per_wall_s: float
    checks_passed: bool


def status_at_end(record: ServerCall) -> str:
    """The call's status when the run ended: its status, or for a call the replay cancelled after the
    drain (still open), the status it had then."""
    assert record.call is not None
    if record.call.get("cancel_reason") == END_REASON and record.events:
        return str(record.events[-1]["from_status"])
    return str(record.call["status"])


def _first(events: list[dict[str, Any]], to: str) -> dict[str, Any] | None:
    return next((e for e in events if e["to_status"] == to), None)


@dataclass(frozen=True, slots=True)
class CallTiming:
    """One call's dispatch timing from its server record (ms, m, s); None where it does not apply.
    ``first_offer_ms`` counts only a first offer made in the first search round: a call that escalated
    before any offer (nobody in range) is counted in ``escalated_first`` instead, since its first offer
    waited for a dispatcher."""

    first_offer_ms: float | None
    accept_ms: float | None
    distance_m: float | None
    eta_s: float | None
    escalated_first: bool


def call_timing(record: ServerCall) -> CallTiming:
    """The :class:`CallTiming` of a call read from the server (``record.call`` must be set)."""
    assert record.call is not None
    created = _first(record.events, "created")
    created_at = float(created["at"]) if created else float(record.call["created_at"])
    escalated = _first(record.events, "escalated")
    first_offer = min((float(o["created_at"]) for o in record.offers), default=None)
    escalated_first = escalated is not None and (first_offer is None or float(escalated["at"]) < first_offer)
    accepted = sorted((o for o in record.offers if o["outcome"] == "accepted"), key=lambda o: o["decided_at"])
    first = accepted[0] if accepted else None
    return CallTiming(
        first_offer_ms=None if first_offer is None or escalated_first else first_offer - created_at,
        accept_ms=None if first is None else float(first["decided_at"]) - created_at,
        distance_m=None if first is None or first["distance_m"] is None else float(first["distance_m"]),
        eta_s=None if first is None or first["eta_s"] is None else float(first["eta_s"]),
        escalated_first=escalated_first,
    )


def record_created_s(record: ServerCall) -> float:
    """When the server created the call, epoch seconds (its ``created`` event)."""
    assert record.call is not None
    created = _first(record.events, "created")
    return (float(created["at"]) if created else float(record.call["created_at"])) / 1000.0


def present(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def compute(result: RunResult) -> Numbers:
    """Derive the report's numbers from a run."""
    rec, records = result.recorder, [r for r in result.server.values() if r.call is not None]
    statuses = Counter(status_at_end(r) for r in records)
    timings = [call_timing(r) for r in records]
    ttfo = present(t.first_offer_ms for t in timings)
    tta = present(t.accept_ms for t in timings)
    distance = present(t.distance_m for t in timings)
    eta = present(t.eta_s for t in timings)
    per_call = [float(len(r.offers)) for r in records]
    outcomes: Counter[str] = Counter(str(o["outcome"]) for r in records for o in r.offers)
    cpu = cpu_percent(result)
    rss = [s.rss_bytes / 1e6 for s in rec.server]
    wall = max(result.meta.replay_wall_s + result.meta.drain_wall_s, 1e-9)
    created_n = sum(1 for c in rec.calls.values() if c.call_id is not None)
    sos_ack = [rec.sos_acked_ms[k] - v for k, v in rec.sos_raised_ms.items() if k in rec.sos_acked_ms]
    return Numbers(
        created=created_n,
        create_failed=sum(1 for c in rec.calls.values() if c.call_id is None),
        assigned=sum(1 for r in records if _first(r.events, "assigned")),
        escalated=sum(1 for r in records if _first(r.events, "escalated")),
        escalated_before_offer=sum(1 for t in timings if t.escalated_first),
        escalated_at_end=statuses.get("escalated", 0),
        relaunched=sum(
            1
            for r in records
            for e in r.events
            if (e["from_status"], e["to_status"]) == ("escalated", "searching")
        ),
        cancelled=statuses.get("cancelled", 0),
        completed=statuses.get("completed", 0),
        open_at_end=sum(n for s, n in statuses.items() if s not in ("completed", "cancelled", "escalated")),
        time_to_first_offer_ms=Summary.of(ttfo),
        time_to_accept_ms=Summary.of(tta),
        distance_m=Summary.of(distance),
        eta_s=Summary.of(eta),
        offers_per_call=Summary.of(per_call),
        offer_outcomes=dict(outcomes),
        chat_latency_ms=Summary.of(rec.chat_latency_ms),
        tracking_latency_ms=Summary.of(rec.tracking_latency_ms),
        sos_raised=len(rec.sos_raised_ms),
        sos_ack_ms=Summary.of(sos_ack),
        cpu_percent=Summary.of(cpu),
        rss_mb=Summary.of(rss),
        client_loop_lag_ms=Summary.of(rec.loop_lag_ms),
        client_cpu_percent=100.0 * result.meta.client_cpu_s / wall,
        utilisation_on_call=_utilisation(result),
        fixes_per_wall_s=rec.fixes_sent / wall,
        calls_per_wall_s=created_n / max(result.meta.replay_wall_s, 1e-9),
        checks_passed=all(c.passed for c in result.checks),
    )


CPU_WINDOW = 5
"""Samples (about a second apart) per CPU figure: a poll answered late would otherwise show its
CPU seconds over too short a wall time (and a process with threads, such as SQLite's, can exceed
100 %: the figure is % of one core)."""


def cpu_percent(result: RunResult) -> list[float]:
    """Server CPU, % of one core, over sliding windows of ``CPU_WINDOW`` samples (one per sample
    after the first ``CPU_WINDOW``)."""
    samples = result.recorder.server
    return [
        100.0 * (b.cpu_s - a.cpu_s) / (b.wall_s - a.wall_s)
        for a, b in zip(samples, samples[CPU_WINDOW:], strict=False)
        if b.wall_s > a.wall_s
    ]


def _utilisation(result: RunResult) -> float:
    shares = []
    for sample in result.recorder.utilisation:
        on_shift = sum(n for s, n in sample.counts.items() if s != "offline")
        if on_shift:
            shares.append((sample.counts.get("on_call", 0) + sample.counts.get("offered", 0)) / on_shift)
    return sum(shares) / len(shares) if shares else math.nan
