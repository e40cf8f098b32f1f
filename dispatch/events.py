"""What the dispatch layer publishes, and where.

- ``call:<id>``: ``call.status`` (every transition: status, from, doctor name, ETA when known, reason);
- ``dispatch``: ``call.created``, ``call.status``, ``call.escalated`` (nobody took the call: a human acts);
- ``doctor:<id>``: ``offer.created``, ``offer.withdrawn``, ``offer.expired``, ``call.assigned``,
  ``call.unassigned``, ``call.cancelled``.

Payloads carry ids as strings, times as epoch milliseconds, distances in metres and ETAs in seconds.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from models.calls import Call
from realtime.broker import Broker, Outgoing
from realtime.channels import call_channel, doctor_channel

DISPATCH_CHANNEL = "dispatch"
CALL_UNASSIGNED = "call.unassigned"
"""On ``doctor:<id>``, data ``{"call": "<call id>", "reason": ...}``: the doctor no longer has the call
(reassigned by a dispatcher, or dropped). The gateway ends that doctor's subscriptions to ``call:<id>``
when it delivers this event (``server/gateway.py``)."""


def epoch_ms(value: dt.datetime | None) -> int | None:
    """A datetime as epoch milliseconds (``None`` stays ``None``)."""
    return None if value is None else int(value.timestamp() * 1000)


def call_summary(call: Call) -> dict[str, Any]:
    """The call as events and the REST API show it."""
    return {
        "id": str(call.id),
        "status": call.status,
        "urgency": call.urgency,
        "specialty": call.specialty,
        "address": call.address,
        "lat": call.lat,
        "lon": call.lon,
        "h3_cell": call.h3_cell,
        "zone_id": None if call.zone_id is None else str(call.zone_id),
        "symptoms": call.symptoms,
        "scheduled_at": epoch_ms(call.scheduled_at),
        "patient_id": str(call.patient_id),
        "doctor_id": None if call.doctor_id is None else str(call.doctor_id),
        "created_at": epoch_ms(call.created_at),
        "assigned_at": epoch_ms(call.assigned_at),
        "completed_at": epoch_ms(call.completed_at),
        "cancel_reason": call.cancel_reason,
        "price_final": None if call.price_final is None else str(call.price_final),
        "version": call.version,
    }


async def publish_status(
    broker: Broker,
    call: Call,
    from_status: str | None,
    *,
    actor: str,
    reason: str | None = None,
    doctor_name: str | None = None,
    eta_s: float | None = None,
    as_of: tuple[str, int] | None = None,
) -> None:
    """``call.status`` on the call's channel and on ``dispatch``. ``as_of``: the ``(status, version)``
    to report when the event is one of several committed together (the call object holds the last)."""
    status, version = (call.status, call.version) if as_of is None else as_of
    data = {
        "call": str(call.id),
        "status": status,
        "from": from_status,
        "actor": actor,
        "reason": reason,
        "doctor": None if call.doctor_id is None else {"id": str(call.doctor_id), "name": doctor_name},
        "eta_s": None if eta_s is None else round(eta_s),
        "version": version,
    }
    await broker.publish_many(
        [
            Outgoing(call_channel(call.id), "call.status", data),
            Outgoing(DISPATCH_CHANNEL, "call.status", data),
        ]
    )


async def publish_doctor(broker: Broker, doctor_id: object, event_type: str, data: dict[str, Any]) -> None:
    """An event on the doctor's private channel."""
    await broker.publish(doctor_channel(str(doctor_id)), event_type, data)


async def publish_dispatch(broker: Broker, event_type: str, data: dict[str, Any]) -> None:
    """An event for dispatchers."""
    await broker.publish(DISPATCH_CHANNEL, event_type, data)
