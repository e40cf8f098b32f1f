"""The report's per-call figures from a server record: time to first offer and to acceptance, the
accepted offer's distance and ETA, escalations before any offer, and the status a call had at the end."""

from __future__ import annotations

from typing import Any

from loadtests.replay.cleanup import END_REASON
from loadtests.replay.collect import ServerCall
from loadtests.replay.numbers import call_timing, status_at_end

T0 = 1_700_000_000_000.0  # epoch ms


def event(from_status: str | None, to_status: str, at_ms: float) -> dict[str, Any]:
    return {"from_status": from_status, "to_status": to_status, "at": T0 + at_ms, "data": None}


def offer(
    outcome: str, created_ms: float, decided_ms: float | None, distance_m: float = 800.0
) -> dict[str, Any]:
    return {
        "id": f"o-{created_ms}",
        "outcome": outcome,
        "created_at": T0 + created_ms,
        "decided_at": None if decided_ms is None else T0 + decided_ms,
        "distance_m": distance_m,
        "eta_s": 120.0,
        "doctor_id": "d",
    }


def test_a_call_offered_twice_counts_its_first_offer_and_its_acceptance() -> None:
    record = ServerCall(
        "c1",
        call={"status": "completed", "created_at": T0},
        events=[
            event(None, "created", 0),
            event("created", "searching", 5),
            event("searching", "assigned", 2400),
        ],
        offers=[offer("declined", 30, 900, 500.0), offer("accepted", 950, 2400, 1200.0)],
    )
    timing = call_timing(record)
    assert timing.first_offer_ms == 30 and timing.accept_ms == 2400
    assert (timing.distance_m, timing.eta_s, timing.escalated_first) == (1200.0, 120.0, False)
    assert status_at_end(record) == "completed"


def test_a_call_escalated_before_any_offer_has_no_time_to_first_offer() -> None:
    record = ServerCall(
        "c2",
        call={"status": "cancelled", "created_at": T0, "cancel_reason": END_REASON},
        events=[
            event(None, "created", 0),
            event("created", "searching", 4),
            event("searching", "escalated", 40),
            event("escalated", "searching", 3000),  # a dispatcher re-launched it
            event("searching", "escalated", 3100),
            event("escalated", "cancelled", 9000),  # the replay closed it after the drain
        ],
        offers=[offer("expired", 3050, 18050)],
    )
    timing = call_timing(record)
    assert timing.escalated_first and timing.first_offer_ms is None and timing.accept_ms is None
    assert status_at_end(record) == "escalated"  # what it was when the replay closed it
