"""The integrity checks of a replay: what must hold whatever the load. Each is PASS or FAIL with details.

1. **No call lost**: every call the server acknowledged creating is found over REST, its status is
   the latest the replay saw (the highest ``version`` among the patient's and the dispatchers'
   ``call.status`` events and the replay's own REST answers), and its last history event leads to it.
2. **No call assigned twice without a reassignment**: in each call's history an ``assigned`` entered
   while a doctor was already on the call is a dispatcher's reassignment; every accepted offer is the
   offer of exactly one assignment. Same-status events that name no doctor are notes (a patient's SOS
   raises the call's urgency with an ``assigned -> assigned`` event) and are not assignments.
3. **No doctor on two calls at once**: from the histories, each doctor's time on calls (assignment to
   completion, cancellation, return to searching or reassignment) never overlaps.
4. **Offsets gap-free**: every client saw every channel's offsets as n, n+1, n+2... after the position
   it subscribed at; a ``RecoveryFailed`` (the server said it could not fill a gap) restarts the
   sequence and is counted separately, not as a gap.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from loadtests.replay.collect import ServerCall
from loadtests.replay.recorder import Recorder

ON_CALL = frozenset({"assigned", "en_route", "arrived", "in_progress"})
ASSIGNMENT_KEYS = ("offer", "doctor", "by_hand")
STAFF_ROLES = frozenset({"dispatcher", "admin"})
MAX_EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class Check:
    """One integrity check's outcome."""

    name: str
    passed: bool
    detail: str

    @property
    def verdict(self) -> str:
        """``PASS`` or ``FAIL``."""
        return "PASS" if self.passed else "FAIL"


def is_assignment(event: dict[str, Any]) -> bool:
    """An event that gives the call a doctor: ``-> assigned`` from another status, or ``assigned ->
    assigned`` naming a doctor or offer (a reassignment). Same-status events without them are notes on
    the call (e.g. a patient's SOS raising its urgency) and assign nobody."""
    if event["to_status"] != "assigned":
        return False
    if event["from_status"] != "assigned":
        return True
    data = event.get("data") or {}
    return any(data.get(key) for key in ASSIGNMENT_KEYS)


def _note(event: dict[str, Any]) -> bool:
    return event["from_status"] == event["to_status"] and not is_assignment(event)


def _examples(items: list[str]) -> str:
    shown = "; ".join(items[:MAX_EXAMPLES])
    return shown + (f"; ... {len(items) - MAX_EXAMPLES} more" if len(items) > MAX_EXAMPLES else "")


def no_call_lost(recorder: Recorder, server: dict[str, ServerCall]) -> Check:
    """Check 1 (see the module docstring)."""
    problems: list[str] = []
    created = [log for log in recorder.calls.values() if log.call_id is not None]
    refused = sum(1 for log in recorder.calls.values() if log.call_id is None)
    for log in created:
        assert log.call_id is not None
        record = server.get(log.call_id)
        if record is None or record.call is None:
            problems.append(f"{log.call_id}: not found ({record.error if record else 'not read'})")
            continue
        status = record.call["status"]
        if status != log.status:
            problems.append(f"{log.call_id}: server says {status}, the replay last saw {log.status}")
        if not record.events or record.events[-1]["to_status"] != status:
            last = record.events[-1]["to_status"] if record.events else None
            problems.append(f"{log.call_id}: history ends at {last}, the call is {status}")
    detail = f"{len(created)} calls created, {len(created) - len(problems)} found as the replay left them"
    if refused:
        detail += f"; {refused} creations failed before the server acknowledged them (not counted)"
    if problems:
        detail += ": " + _examples(problems)
    return Check("no call lost", not problems, detail)


def no_double_assignment(server: dict[str, ServerCall]) -> Check:
    """Check 2 (see the module docstring)."""
    problems: list[str] = []
    reassignments = 0
    for call_id, record in server.items():
        assignment_offers: list[str] = []
        for event in record.events:
            if not is_assignment(event):
                continue
            data = event.get("data") or {}
            if data.get("offer"):
                assignment_offers.append(str(data["offer"]))
            if event["from_status"] in ON_CALL:
                if event.get("actor_role") in STAFF_ROLES:
                    reassignments += 1
                else:
                    problems.append(
                        f"{call_id}: assigned again from {event['from_status']} by {event.get('actor_role')}"
                    )
        accepted = sorted(str(o["id"]) for o in record.offers if o["outcome"] == "accepted")
        if accepted != sorted(assignment_offers):
            problems.append(
                f"{call_id}: accepted offers {accepted} vs assignments by offer {assignment_offers}"
            )
    detail = f"{len(server)} histories, {reassignments} reassignments by dispatchers"
    if problems:
        detail += ": " + _examples(problems)
    return Check("no call assigned twice without a reassignment", not problems, detail)


def doctor_intervals(record: ServerCall) -> list[tuple[str, float, float]]:
    """(doctor id, from, to) in epoch ms for each stretch a doctor was on the call (``to`` is infinite
    while still on it)."""
    offers = {str(o["id"]): str(o["doctor_id"]) for o in record.offers}
    out: list[tuple[str, float, float]] = []
    current: tuple[str, float] | None = None
    for event in record.events:
        if _note(event):
            continue
        to, at = event["to_status"], float(event["at"])
        if current is not None and (to == "assigned" or to not in ON_CALL):
            out.append((current[0], current[1], at))
            current = None
        if to == "assigned":
            data = event.get("data") or {}
            doctor = offers.get(str(data.get("offer"))) or data.get("doctor")
            if doctor is None and record.call is not None:
                doctor = record.call.get("doctor_id")
            if doctor is not None:
                current = (str(doctor), at)
    if current is not None:
        out.append((current[0], current[1], math.inf))
    return out


def no_doctor_on_two_calls(server: dict[str, ServerCall]) -> Check:
    """Check 3 (see the module docstring)."""
    by_doctor: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for call_id, record in server.items():
        for doctor, start, end in doctor_intervals(record):
            by_doctor[doctor].append((start, end, call_id))
    problems: list[str] = []
    stretches = 0
    for doctor, items in by_doctor.items():
        items.sort()
        stretches += len(items)
        latest_end, latest_call = -math.inf, ""
        for start, end, call_id in items:
            if start < latest_end:
                problems.append(f"doctor {doctor} on {latest_call} and {call_id} at {start:.0f}")
            if end > latest_end:
                latest_end, latest_call = end, call_id
    detail = f"{len(by_doctor)} doctors, {stretches} stretches on calls"
    if problems:
        detail += ": " + _examples(problems)
    return Check("no doctor on two calls at once", not problems, detail)


def offsets_gap_free(recorder: Recorder) -> Check:
    """Check 4 (see the module docstring)."""
    ledger = recorder.offsets
    unchecked = ledger.unchecked()
    detail = (
        f"{ledger.events} events on {ledger.streams} client subscriptions; {ledger.gaps} gaps; "
        f"{ledger.recovery_failed} RecoveryFailed (counted apart), "
        f"{ledger.subscriptions_lost} subscriptions lost"
    )
    if unchecked:
        detail += f"; {unchecked} events without a subscription position"
    if ledger.gap_details:
        detail += ": " + _examples(ledger.gap_details)
    return Check("every offset sequence gap-free", ledger.gaps == 0 and unchecked == 0, detail)


def run_checks(recorder: Recorder, server: dict[str, ServerCall]) -> list[Check]:
    """All four checks, in order."""
    return [
        no_call_lost(recorder, server),
        no_double_assignment(server),
        no_doctor_on_two_calls(server),
        offsets_gap_free(recorder),
    ]
