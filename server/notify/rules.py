"""The notification rules: which outbox events tell whom what. Pure functions; no I/O.

An outbox row (``channel``, ``type``, ``payload`` as staged by ``dispatch/publisher.py``) gives zero or
more :class:`Intent` s: a :class:`Kind` (what happened), an :class:`Audience` (who: one person, the
patient of a call, or every dispatcher, resolved by the deriver against the database) and the
template's values (``params``: JSON-ready, ids as strings, times epoch ms, distances metres, ETAs
seconds).

=========================  ===========================  ======================================
event (channel)            kind                         audience
=========================  ===========================  ======================================
offer.created (doctor:)    offer                        that doctor
call.status assigned       assigned                     the call's patient
call.status en_route       en_route (with ETA)          the call's patient
call.status arrived        arrived                      the call's patient
call.status cancelled      cancelled                    the call's patient
call.escalated (dispatch)  escalated                    every active dispatcher
sos.raised, repeat == 2    sos_unanswered               every active dispatcher
booking.released (call:)   booking_released             the call's patient (not for a cancel)
booking.booked             booked                       the call's patient
booking.rescheduled        rescheduled                  the call's patient
booking.reminder           reminder (T - 24 h, T - 2 h) the call's patient
=========================  ===========================  ======================================

``call.status`` is read on the call's own channel only (it is staged on ``dispatch`` too). An SOS is
repeated every ``TOT_SOS_REPEAT`` seconds until a dispatcher acknowledges it; its second repeat means
nobody did within two intervals, and only that one is a notification (one per alert).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from realtime.event_types import EventType


class Kind(StrEnum):
    """What a notification is about (``notifications.kind``, the template's name)."""

    OFFER_CREATED = "offer"
    CALL_ASSIGNED = "assigned"
    CALL_EN_ROUTE = "en_route"
    CALL_ARRIVED = "arrived"
    CALL_CANCELLED = "cancelled"
    CALL_ESCALATED = "escalated"
    SOS_UNACKNOWLEDGED = "sos_unanswered"
    BOOKING_RELEASED = "booking_released"
    BOOKING_BOOKED = "booked"
    BOOKING_RESCHEDULED = "rescheduled"
    BOOKING_REMINDER = "reminder"


URGENT_KINDS: frozenset[Kind] = frozenset({Kind.OFFER_CREATED, Kind.SOS_UNACKNOWLEDGED, Kind.CALL_ARRIVED})
"""Kinds that quiet hours never hold back (an offer, an SOS, "the doctor has arrived")."""

NOTIFY_TYPES: frozenset[str] = frozenset(
    {
        EventType.OFFER_CREATED,
        EventType.CALL_STATUS,
        EventType.CALL_ESCALATED,
        EventType.SOS_RAISED,
        EventType.BOOKING_RELEASED,
        EventType.BOOKING_BOOKED,
        EventType.BOOKING_RESCHEDULED,
        EventType.BOOKING_REMINDER,
    }
)
"""The event types the rules read (``OutboxSettings.notify_types``: others are never looked at)."""

STATUS_KINDS: dict[str, Kind] = {
    "assigned": Kind.CALL_ASSIGNED,
    "en_route": Kind.CALL_EN_ROUTE,
    "arrived": Kind.CALL_ARRIVED,
    "cancelled": Kind.CALL_CANCELLED,
}
"""``call.status`` values the patient is told about."""

SOS_UNACKNOWLEDGED_REPEAT = 2

BOOKING_KINDS: dict[str, Kind] = {
    EventType.BOOKING_RELEASED: Kind.BOOKING_RELEASED,
    EventType.BOOKING_BOOKED: Kind.BOOKING_BOOKED,
    EventType.BOOKING_RESCHEDULED: Kind.BOOKING_RESCHEDULED,
    EventType.BOOKING_REMINDER: Kind.BOOKING_REMINDER,
}
"""Booking events (on ``call:<id>``) the call's patient is told about."""
RELEASED_SILENTLY = "call_cancelled"
"""The release reason the patient is not told about again (the cancellation is its own notification)."""
"""The ``repeat`` of ``sos.raised`` that means "nobody acknowledged within two repeat intervals"."""


class AudienceKind(StrEnum):
    PERSON = "person"
    PATIENT_OF_CALL = "patient_of_call"
    DISPATCHERS = "dispatchers"


@dataclass(frozen=True, slots=True)
class Audience:
    """Who: ``PERSON`` (``ident`` a user id), ``PATIENT_OF_CALL`` (``ident`` a call id) or
    ``DISPATCHERS`` (every active dispatcher; ``ident`` None)."""

    kind: AudienceKind
    ident: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Intent:
    """One notification to make: ``kind`` for ``audience`` with template values ``params``, about
    ``call_id`` (None for none)."""

    kind: Kind
    audience: Audience
    params: dict[str, Any] = field(default_factory=dict)
    call_id: uuid.UUID | None = None


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except (TypeError, ValueError):
        return None


def intents(channel: str, event_type: str, payload: dict[str, Any]) -> list[Intent]:
    """The notifications one outbox event makes (see the module table); ``[]`` for any other event or
    a payload without what the rule needs (never raises on a payload's shape)."""
    if event_type == EventType.OFFER_CREATED and channel.startswith("doctor:"):
        doctor = _uuid(channel.removeprefix("doctor:"))
        call = payload.get("call") or {}
        if doctor is None or not isinstance(call, dict):
            return []
        params = {
            "offer": str(payload.get("offer", "")),
            "address": str(call.get("address", "")),
            "urgency": str(call.get("urgency", "")),
            "distance_m": payload.get("distance_m"),
            "eta_s": payload.get("eta_s"),
            "deadline_ms": payload.get("deadline"),
        }
        return [
            Intent(Kind.OFFER_CREATED, Audience(AudienceKind.PERSON, doctor), params, _uuid(call.get("id")))
        ]
    if event_type == EventType.CALL_STATUS and channel.startswith("call:"):
        kind = STATUS_KINDS.get(str(payload.get("status")))
        call_id = _uuid(payload.get("call"))
        if kind is None or call_id is None:
            return []
        named = payload.get("doctor") or {}
        params = {
            "doctor_name": named.get("name") if isinstance(named, dict) else None,
            "eta_s": payload.get("eta_s"),
            "reason": payload.get("reason"),
        }
        return [Intent(kind, Audience(AudienceKind.PATIENT_OF_CALL, call_id), params, call_id)]
    if event_type in BOOKING_KINDS and channel.startswith("call:"):
        call_id = _uuid(payload.get("call"))
        if call_id is None or payload.get("reason") == RELEASED_SILENTLY:
            return []
        params = {
            "scheduled_ms": payload.get("scheduled_at"),
            "previous_ms": payload.get("previous"),
            "hours_before": payload.get("hours_before"),
            "reason": payload.get("reason"),
        }
        kind = BOOKING_KINDS[event_type]
        return [Intent(kind, Audience(AudienceKind.PATIENT_OF_CALL, call_id), params, call_id)]
    if event_type == EventType.CALL_ESCALATED:
        call = payload.get("call") or {}
        if not isinstance(call, dict):
            return []
        params = {"address": str(call.get("address", "")), "reason": payload.get("reason")}
        return [
            Intent(Kind.CALL_ESCALATED, Audience(AudienceKind.DISPATCHERS), params, _uuid(call.get("id")))
        ]
    if event_type == EventType.SOS_RAISED and payload.get("repeat") == SOS_UNACKNOWLEDGED_REPEAT:
        params = {
            "sos": str(payload.get("id", "")),
            "sos_kind": str(payload.get("kind", "")),
            "message": payload.get("message"),
            "lat": payload.get("lat"),
            "lon": payload.get("lon"),
        }
        return [
            Intent(
                Kind.SOS_UNACKNOWLEDGED,
                Audience(AudienceKind.DISPATCHERS),
                params,
                _uuid(payload.get("call")),
            )
        ]
    return []
