"""What the dispatch layer publishes, and where: the typed payloads of its events.

- ``call:<id>``: ``call.status`` (every transition: status, from, doctor name, ETA when known, reason),
  ``chat.message``, ``chat.read``, ``doctor.position`` (ephemeral);
- ``dispatch``: ``call.created``, ``call.status``, ``call.escalated`` (nobody took the call: a human acts);
- ``doctor:<id>``: ``offer.created``, ``offer.withdrawn``, ``offer.expired``, ``call.assigned``,
  ``call.unassigned``, ``call.cancelled``, ``doctor.status``, ``sos.nearby``;
- ``sos``: ``sos.raised``, ``sos.acknowledged``, ``sos.resolved``.

The names are :class:`realtime.event_types.EventType`; everything leaves through
:class:`dispatch.publisher.EventPublisher`. Payloads carry ids as strings, times as epoch milliseconds,
distances in metres and ETAs in seconds. The ``TypedDict`` s below only describe the dicts: at run time
they are plain dicts, so the frames are the same bytes as before they were typed.
"""

from __future__ import annotations

import datetime as dt
from typing import NotRequired, TypedDict

from models.calls import Call
from realtime.event_types import EventType

DISPATCH_CHANNEL = "dispatch"
CALL_UNASSIGNED = EventType.CALL_UNASSIGNED
"""On ``doctor:<id>``, data ``{"call": "<call id>", "reason": ...}``: the doctor no longer has the call
(reassigned by a dispatcher, or dropped). The gateway ends that doctor's subscriptions to ``call:<id>``
when it delivers this event (``server/ws/subscriptions.py``). A ``StrEnum`` member: equal to, and hashed as,
the string ``"call.unassigned"`` of ``Publication.type``."""


class CallSummary(TypedDict):
    """The call as events and the REST API show it: ids as strings, times as epoch ms, ``lat``/``lon``
    in degrees, ``price_final`` a decimal string."""

    id: str
    status: str
    urgency: str
    specialty: str
    address: str
    lat: float
    lon: float
    h3_cell: str | None
    zone_id: str | None
    symptoms: str | None
    scheduled_at: int | None
    patient_id: str
    doctor_id: str | None
    created_at: int | None
    assigned_at: int | None
    completed_at: int | None
    cancel_reason: str | None
    price_final: str | None
    version: int


class DoctorRef(TypedDict):
    """A doctor named in ``call.status``: id (string) and full name (``None`` when unknown)."""

    id: str
    name: str | None


# ``from`` is a keyword, hence the functional form.
CallStatusPayload = TypedDict(
    "CallStatusPayload",
    {
        "call": str,
        "status": str,
        "from": str | None,
        "actor": str,
        "reason": str | None,
        "doctor": DoctorRef | None,
        "eta_s": int | None,
        "version": int,
    },
)
"""``call.status``: the new ``status`` and the one it came ``from`` (``None`` for a new call), the
``actor`` (``system``, ``patient``, ``doctor``, ``staff``), ``eta_s`` in whole seconds, the call's
``version`` after the change."""


class CallCreatedPayload(TypedDict):
    """``call.created``: the call id and its urgency."""

    call: str
    urgency: str


class CallEscalatedPayload(TypedDict):
    """``call.escalated``: the whole call and why nobody took it."""

    call: CallSummary
    reason: str


class CallAssignedPayload(TypedDict):
    """``call.assigned``: the whole call and either the accepted ``offer`` id or ``by_hand: True``."""

    call: CallSummary
    offer: NotRequired[str]
    by_hand: NotRequired[bool]


class CallReleasedPayload(TypedDict):
    """``call.unassigned`` / ``call.cancelled`` on the doctor's channel: the call id and why."""

    call: str
    reason: str


class OfferCreatedPayload(TypedDict):
    """``offer.created``: offer id, the whole call, straight-line ``distance_m`` (metres, 0.1 m),
    ``eta_s`` (whole seconds), ``deadline`` (epoch ms)."""

    offer: str
    call: CallSummary
    distance_m: float
    eta_s: int
    deadline: int


class OfferWithdrawnPayload(TypedDict):
    """``offer.withdrawn``: offer id, call id and why."""

    offer: str
    call: str
    reason: str


class OfferExpiredPayload(TypedDict):
    """``offer.expired``: offer id and call id."""

    offer: str
    call: str


class ChatSender(TypedDict):
    """Who wrote a chat message: user id, role and name (``None`` when not known to the reader)."""

    id: str
    role: str | None
    name: str | None


class ChatMessagePayload(TypedDict):
    """``chat.message`` (and the REST shape of a message): ids as strings, ``at``/``read_at`` epoch ms."""

    id: str
    call: str
    sender: ChatSender
    client_msg_id: str
    text: str
    at: int | None
    read_at: int | None


class ChatReader(TypedDict):
    """Who read: user id and role."""

    id: str
    role: str


class ChatReadPayload(TypedDict):
    """``chat.read``: the call, the reader, the last message read (``up_to``, an id), ``at`` epoch ms."""

    call: str
    reader: ChatReader
    up_to: str
    at: int | None


class DoctorStatusPayload(TypedDict):
    """``doctor.status``: the new status, the state's ``version``, ``since`` (epoch ms), and ``reason``
    only when the server changed it (``"silent"``: no fix for ``TOT_DOCTOR_OFFLINE_AFTER``)."""

    status: str
    version: int
    since: int
    reason: NotRequired[str]


class DoctorPositionPayload(TypedDict):
    """``doctor.position`` (ephemeral): doctor id, ``lat``/``lon`` degrees, ``acc`` metres, ``heading``
    degrees, ``speed`` m/s, ``ts`` the fix time (epoch ms), ``distance_m`` (metres, 0.1 m) to the call
    and ``eta_s`` (whole seconds), both ``None`` when the call's place is unknown."""

    doctor: str
    lat: float
    lon: float
    acc: float
    heading: float | None
    speed: float | None
    ts: int
    distance_m: float | None
    eta_s: int | None


def epoch_ms(value: dt.datetime | None) -> int | None:
    """A datetime as epoch milliseconds (``None`` stays ``None``)."""
    return None if value is None else int(value.timestamp() * 1000)


def call_summary(call: Call) -> CallSummary:
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
