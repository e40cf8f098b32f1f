"""The closed vocabularies of the domain, shared by the models, the API and the dispatch logic."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """What a user may do. Only ``patient`` and ``doctor`` can register themselves."""

    PATIENT = "patient"
    DOCTOR = "doctor"
    CLINIC_ADMIN = "clinic_admin"
    DISPATCHER = "dispatcher"
    ADMIN = "admin"


SELF_REGISTRATION_ROLES = (Role.PATIENT, Role.DOCTOR)


class Urgency(StrEnum):
    """How fast a call must be served: emergencies are offered to several doctors at once."""

    EMERGENCY = "emergency"
    URGENT = "urgent"
    PLANNED = "planned"


class CallStatus(StrEnum):
    """The call life cycle (see docs/architecture.md); ``completed`` and ``cancelled`` are final."""

    CREATED = "created"
    SEARCHING = "searching"
    OFFERED = "offered"
    ASSIGNED = "assigned"
    EN_ROUTE = "en_route"
    ARRIVED = "arrived"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    ESCALATED = "escalated"


class OfferOutcome(StrEnum):
    """What became of one offer of a call to one doctor."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


class SosKind(StrEnum):
    """Doctors raise ``danger`` or ``complex_call``; patients raise ``emergency`` on their call."""

    DANGER = "danger"
    COMPLEX_CALL = "complex_call"
    EMERGENCY = "emergency"


class SosStatus(StrEnum):
    """An SOS repeats until acknowledged, and stays open until resolved."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


def values(enum: type[StrEnum]) -> tuple[str, ...]:
    """The string values of an enum, in declaration order (for CHECK constraints)."""
    return tuple(member.value for member in enum)


class DoctorStatus(StrEnum):
    """A doctor's availability. The string values are stored in Redis and sent on the wire.

    Here, with the other closed vocabularies, because both the live location index (``geo/``) and the
    availability rules (``dispatch/doctor_states.py``) speak it, and ``geo`` sits below ``dispatch``.
    """

    OFFLINE = "offline"
    AVAILABLE = "available"
    OFFERED = "offered"
    BUSY = "busy"
    PAUSED = "paused"
