"""The replay's integrity checks on hand-written histories: they pass on sound records and fail on
each kind of fault they exist for."""

from __future__ import annotations

from typing import Any

from loadtests.replay.collect import ServerCall
from loadtests.replay.integrity import (
    doctor_intervals,
    no_call_lost,
    no_doctor_on_two_calls,
    no_double_assignment,
    offsets_gap_free,
)
from loadtests.replay.recorder import CallLog, Recorder
from realtime.client import Position


def ev(frm: str | None, to: str, at: int, role: str | None = None, **data: Any) -> dict[str, Any]:
    return {"from_status": frm, "to_status": to, "at": at, "actor_role": role, "data": data or None}


def offer(offer_id: str, doctor: str, outcome: str = "accepted") -> dict[str, Any]:
    return {"id": offer_id, "doctor_id": doctor, "outcome": outcome, "created_at": 0, "decided_at": 0}


def visit(call_id: str, doctor: str, start: int, end: int, offer_id: str | None = None) -> ServerCall:
    offer_id = offer_id or f"o-{call_id}"
    return ServerCall(
        call_id,
        {"id": call_id, "status": "completed", "doctor_id": doctor},
        [
            ev(None, "created", start - 20, "patient"),
            ev("created", "searching", start - 15),
            ev("searching", "offered", start - 10, offers=[offer_id]),
            ev("offered", "assigned", start, "doctor", offer=offer_id),
            ev("assigned", "en_route", start + 1, "doctor"),
            ev("en_route", "arrived", start + 2, "doctor"),
            ev("arrived", "in_progress", start + 3, "doctor"),
            ev("in_progress", "completed", end, "doctor"),
        ],
        [offer(offer_id, doctor)],
    )


def test_sound_histories_pass() -> None:
    server = {
        "c1": visit("c1", "d1", 100, 200),
        "c2": visit("c2", "d1", 200, 300),
        "c3": visit("c3", "d2", 150, 250),
    }
    assert no_double_assignment(server).passed
    check = no_doctor_on_two_calls(server)
    assert check.passed, check.detail
    assert "2 doctors, 3 stretches" in check.detail


def test_a_doctor_on_two_calls_at_once_fails() -> None:
    server = {"c1": visit("c1", "d1", 100, 200), "c2": visit("c2", "d1", 199, 300)}
    check = no_doctor_on_two_calls(server)
    assert not check.passed and check.verdict == "FAIL"
    assert "doctor d1 on c1 and c2" in check.detail


def test_an_open_visit_lasts_to_the_end() -> None:
    record = visit("c1", "d1", 100, 200)
    record.events = record.events[:-1]  # still in progress
    assert doctor_intervals(record) == [("d1", 100.0, float("inf"))]
    later = visit("c2", "d1", 5000, 6000)
    assert not no_doctor_on_two_calls({"c1": record, "c2": later}).passed


def test_reassignment_by_a_dispatcher_is_not_a_double_assignment_and_frees_the_first_doctor() -> None:
    record = visit("c1", "d1", 100, 400)
    record.events.insert(5, ev("en_route", "assigned", 150, "dispatcher", doctor="d2", by_hand=True))
    assert no_double_assignment({"c1": record}).passed
    assert doctor_intervals(record)[:2] == [("d1", 100.0, 150.0), ("d2", 150.0, 400.0)]
    # d1 may take another call from 150 on.
    assert no_doctor_on_two_calls({"c1": record, "c2": visit("c2", "d1", 160, 170)}).passed


def test_a_note_on_an_assigned_call_is_not_an_assignment() -> None:
    """A patient's SOS raises the urgency with an ``assigned -> assigned`` event by nobody."""
    record = visit("c1", "d1", 100, 400)
    record.events.insert(4, ev("assigned", "assigned", 120, None, urgency="emergency"))
    assert no_double_assignment({"c1": record}).passed
    assert doctor_intervals(record) == [("d1", 100.0, 400.0)]


def test_assigned_twice_without_a_dispatcher_fails() -> None:
    record = visit("c1", "d1", 100, 400)
    record.events.insert(5, ev("en_route", "assigned", 150, "doctor", offer="o-x"))
    record.offers.append(offer("o-x", "d2"))
    check = no_double_assignment({"c1": record})
    assert not check.passed and "assigned again from en_route" in check.detail


def test_an_accepted_offer_without_its_assignment_fails() -> None:
    record = visit("c1", "d1", 100, 400)
    record.offers.append(offer("o-ghost", "d2"))  # two accepted offers, one assignment
    assert not no_double_assignment({"c1": record}).passed


def recorder_with(call_id: str, status: str) -> Recorder:
    recorder = Recorder()
    log = CallLog("k1", 0.0, "p@x")
    recorder.new_call(log)
    recorder.created(log, call_id, 1, "created")
    recorder.observe(call_id, status, 9)
    recorder.observe(call_id, "searching", 3)  # older: ignored
    return recorder


def test_no_call_lost_passes_when_the_server_agrees_with_the_replay() -> None:
    check = no_call_lost(recorder_with("c1", "completed"), {"c1": visit("c1", "d1", 100, 200)})
    assert check.passed, check.detail


def test_a_missing_call_or_another_status_fails() -> None:
    assert not no_call_lost(recorder_with("c1", "completed"), {}).passed
    missing = ServerCall("c1", error="HTTP 404 not_found")
    assert not no_call_lost(recorder_with("c1", "completed"), {"c1": missing}).passed
    check = no_call_lost(recorder_with("c1", "cancelled"), {"c1": visit("c1", "d1", 100, 200)})
    assert not check.passed and "server says completed, the replay last saw cancelled" in check.detail


def test_offsets_must_follow_each_other_from_the_subscribed_position() -> None:
    recorder = Recorder()
    ledger = recorder.offsets
    ledger.event("p", "call:1", 6, "e1")  # read before start() ran: checked there
    ledger.start("p", "call:1", Position(5, "e1"))
    ledger.event("p", "call:1", 7, "e1")
    ledger.recovery("p", "call:1", Position(20, "e2"))  # the server said so: not a gap
    ledger.event("p", "call:1", 21, "e2")
    check = offsets_gap_free(recorder)
    assert check.passed, check.detail
    assert "1 RecoveryFailed" in check.detail
    ledger.event("p", "call:1", 23, "e2")  # 22 is missing
    check = offsets_gap_free(recorder)
    assert not check.passed and "1 gaps" in check.detail


def test_an_epoch_change_without_recovery_failed_is_a_gap() -> None:
    recorder = Recorder()
    recorder.offsets.start("d", "doctor:1", Position(0, "a"))
    recorder.offsets.event("d", "doctor:1", 1, "b")
    assert not offsets_gap_free(recorder).passed
