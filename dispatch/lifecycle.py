"""The call life cycle: which status may follow which, and who may make each move.

```
created -> searching -> offered -> assigned -> en_route -> arrived -> in_progress -> completed
              ^  |          |          |  ^
              |  |          |          |  +-- dispatcher reassigns to another doctor
              |  |          +-- declined / expired --> searching (next candidate)
              |  +-- no candidate after the search budget --> escalated --(dispatcher)--> searching
              +-- doctor drops an assigned call (or a dispatcher sends it back) --> searching
any non-final state -> cancelled (patient until the doctor arrives; dispatchers always)
```

Every status change in the system goes through :func:`check_transition`; the call service writes the
change and its event row in one transaction and publishes it.
"""

from __future__ import annotations

from enum import StrEnum

from models.enums import CallStatus

S = CallStatus


class Actor(StrEnum):
    """Who moves a call, relative to the call: its patient, the doctor it concerns (offered or
    assigned), staff (dispatchers, admins), or the system (the offer loop, deadlines)."""

    SYSTEM = "system"
    PATIENT = "patient"
    DOCTOR = "doctor"
    STAFF = "staff"


FINAL = frozenset({S.COMPLETED, S.CANCELLED})
ACTIVE = frozenset(set(S) - FINAL)
DOCTOR_ON_CALL = frozenset({S.ASSIGNED, S.EN_ROUTE, S.ARRIVED, S.IN_PROGRESS})
"""Statuses in which the call has a doctor."""

TRANSITIONS: dict[tuple[CallStatus, CallStatus], frozenset[Actor]] = {
    (S.CREATED, S.SEARCHING): frozenset({Actor.SYSTEM}),
    (S.SEARCHING, S.OFFERED): frozenset({Actor.SYSTEM}),
    (S.SEARCHING, S.ESCALATED): frozenset({Actor.SYSTEM}),
    (S.OFFERED, S.SEARCHING): frozenset({Actor.SYSTEM}),  # declined, expired
    (S.OFFERED, S.ASSIGNED): frozenset({Actor.DOCTOR, Actor.STAFF}),  # accepted; or assigned by hand
    (S.SEARCHING, S.ASSIGNED): frozenset({Actor.STAFF}),
    (S.ESCALATED, S.ASSIGNED): frozenset({Actor.STAFF}),
    (S.ESCALATED, S.SEARCHING): frozenset({Actor.STAFF}),  # re-launch the search
    (S.ASSIGNED, S.ASSIGNED): frozenset({Actor.STAFF}),  # reassign to another doctor
    (S.EN_ROUTE, S.ASSIGNED): frozenset({Actor.STAFF}),
    (S.ASSIGNED, S.SEARCHING): frozenset({Actor.DOCTOR, Actor.STAFF}),  # the doctor drops it
    (S.EN_ROUTE, S.SEARCHING): frozenset({Actor.DOCTOR, Actor.STAFF}),
    (S.ASSIGNED, S.EN_ROUTE): frozenset({Actor.DOCTOR}),
    (S.EN_ROUTE, S.ARRIVED): frozenset({Actor.DOCTOR}),
    (S.ARRIVED, S.IN_PROGRESS): frozenset({Actor.DOCTOR}),
    (S.IN_PROGRESS, S.COMPLETED): frozenset({Actor.DOCTOR, Actor.STAFF}),
    **{
        (s, S.CANCELLED): frozenset({Actor.PATIENT, Actor.STAFF}) for s in (S.CREATED, S.SEARCHING, S.OFFERED)
    },
    **{
        (s, S.CANCELLED): frozenset({Actor.PATIENT, Actor.STAFF})
        for s in (S.ASSIGNED, S.EN_ROUTE, S.ESCALATED)
    },
    # Once the doctor is at the door, only a dispatcher can cancel (a patient's change of mind is a dispute).
    (S.ARRIVED, S.CANCELLED): frozenset({Actor.STAFF}),
    (S.IN_PROGRESS, S.CANCELLED): frozenset({Actor.STAFF}),
}


class TransitionError(Exception):
    """A status change that the life cycle does not allow. ``allowed`` lists the statuses this actor
    could move the call to from ``current`` (for the 409 body)."""

    def __init__(self, current: CallStatus, wanted: CallStatus, actor: Actor) -> None:
        super().__init__(f"a call that is {current.value} cannot become {wanted.value} (by {actor.value})")
        self.current = current
        self.wanted = wanted
        self.actor = actor
        self.allowed = next_statuses(current, actor)


def can_transition(current: CallStatus, wanted: CallStatus, actor: Actor) -> bool:
    """Whether ``actor`` may move a call from ``current`` to ``wanted``."""
    return actor in TRANSITIONS.get((current, wanted), frozenset())


def check_transition(current: CallStatus, wanted: CallStatus, actor: Actor) -> None:
    """Raises :class:`TransitionError` unless ``actor`` may move the call from ``current`` to ``wanted``."""
    if not can_transition(current, wanted, actor):
        raise TransitionError(current, wanted, actor)


def next_statuses(current: CallStatus, actor: Actor) -> list[CallStatus]:
    """The statuses ``actor`` may move a call in ``current`` to, in life-cycle order."""
    return [to for to in S if can_transition(current, to, actor)]
