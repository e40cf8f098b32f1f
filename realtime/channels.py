"""Channel names and who may subscribe to them.

| channel | who may subscribe |
|---|---|
| ``doctor:<user id>`` | that doctor only (offers, assignments, SOS nearby) |
| ``call:<call id>`` | the call's patient, its assigned doctor, dispatchers and admins |
| ``dispatch`` | dispatchers and admins (everything that needs a human) |
| ``sos`` | dispatchers and admins |
| ``map:<H3 cell>`` | dispatchers and admins (batched positions for the console, one channel per cell at
  :data:`MAP_RESOLUTION`) |

The rules for call channels need the call's parties, which the caller looks up (a database read at
subscribe time, never per event).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum

import h3

from geo.map_cells import MAP_RESOLUTION
from models.enums import Role

STAFF_ROLES = frozenset({Role.DISPATCHER, Role.ADMIN})


class ChannelKind(StrEnum):
    """The kinds of channel (the part of the name before ``:``)."""

    DOCTOR = "doctor"
    CALL = "call"
    DISPATCH = "dispatch"
    SOS = "sos"
    MAP = "map"


@dataclass(frozen=True, slots=True)
class Channel:
    """A parsed channel name; ``key`` is the id or cell after the colon (empty for global channels)."""

    kind: ChannelKind
    key: str

    @property
    def name(self) -> str:
        """The canonical channel name."""
        return f"{self.kind.value}:{self.key}" if self.key else self.kind.value


class BadChannel(ValueError):
    """Not a channel name the server knows."""


def parse(name: str) -> Channel:
    """Parse a channel name. Raises :class:`BadChannel`."""
    kind_text, _, key = name.partition(":")
    try:
        kind = ChannelKind(kind_text)
    except ValueError:
        raise BadChannel(f"unknown channel kind {kind_text[:20]!r}") from None
    if kind in (ChannelKind.DISPATCH, ChannelKind.SOS):
        if key:
            raise BadChannel(f"{kind.value} takes no id")
        return Channel(kind, "")
    if kind is ChannelKind.MAP:
        if not h3.is_valid_cell(key) or h3.get_resolution(key) != MAP_RESOLUTION:
            raise BadChannel(f"map channels are map:<H3 cell at resolution {MAP_RESOLUTION}>")
        return Channel(kind, key)
    try:
        return Channel(kind, str(uuid.UUID(key)))
    except ValueError:
        raise BadChannel(f"{kind.value} channels are {kind.value}:<uuid>") from None


def doctor_channel(doctor_id: uuid.UUID | str) -> str:
    """``doctor:<id>``."""
    return f"doctor:{doctor_id}"


def call_channel(call_id: uuid.UUID | str) -> str:
    """``call:<id>``."""
    return f"call:{call_id}"


def may_subscribe(
    channel: Channel,
    user_id: uuid.UUID,
    role: Role,
    call_parties: tuple[uuid.UUID, uuid.UUID | None] | None = None,
) -> bool:
    """Whether ``user_id`` with ``role`` may subscribe to ``channel``.

    ``call_parties`` is ``(patient_id, assigned doctor_id or None)`` for call channels.
    """
    if channel.kind is ChannelKind.DOCTOR:
        return role is Role.DOCTOR and channel.key == str(user_id)
    if channel.kind in (ChannelKind.DISPATCH, ChannelKind.SOS, ChannelKind.MAP):
        return role in STAFF_ROLES
    if role in STAFF_ROLES:
        return True
    if call_parties is None:
        return False
    patient_id, doctor_id = call_parties
    if role is Role.PATIENT:
        return user_id == patient_id
    if role is Role.DOCTOR:
        return doctor_id is not None and user_id == doctor_id
    return False
