"""A person's preferences: channels on or off per event kind, and quiet hours. Pure functions.

Channels: a ``notify_preferences`` row for (person, kind, channel) wins over one for (person, ``*``,
channel); no row means on. Quiet hours: ``quiet_start_min`` to ``quiet_end_min`` (minutes after local
midnight in the person's ``time_zone``; the span may cross midnight, 22:00-07:00 is 1320-420; equal
ends mean none), during which news is suppressed, except the urgent kinds
(``rules.URGENT_KINDS``: an offer, an SOS, the doctor's arrival), which quiet hours never hold back.
"""

from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

from models.repositories.notifications import Person
from server.notify.rules import URGENT_KINDS, Kind
from server.notify.templates import DEFAULT_ZONE

MINUTES_PER_DAY = 24 * 60


def channel_enabled(
    prefs: dict[tuple[uuid.UUID, str, str], bool], person: uuid.UUID, kind: str, channel: str
) -> bool:
    """Whether ``person`` wants ``kind`` on ``channel`` (module docstring)."""
    specific = prefs.get((person, kind, channel))
    if specific is not None:
        return specific
    return prefs.get((person, "*", channel), True)


def local_minute(now_ms: int, zone: str | None) -> int:
    """Minutes after local midnight at ``now_ms`` (epoch ms) in ``zone`` (IANA; :data:`DEFAULT_ZONE`
    when None or unknown)."""
    try:
        tz: dt.tzinfo = zoneinfo.ZoneInfo(zone or DEFAULT_ZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        tz = zoneinfo.ZoneInfo(DEFAULT_ZONE)
    local = dt.datetime.fromtimestamp(now_ms / 1000, tz=tz)
    return local.hour * 60 + local.minute


def in_quiet_hours(person: Person, now_ms: int) -> bool:
    """Whether ``now_ms`` falls in ``person``'s quiet hours (module docstring)."""
    start, end = person.quiet_start_min, person.quiet_end_min
    if start is None or end is None or start == end:
        return False
    minute = local_minute(now_ms, person.time_zone)
    if start < end:
        return start <= minute < end
    return minute >= start or minute < end


def held_back(person: Person, kind: Kind, now_ms: int) -> bool:
    """Whether quiet hours hold ``kind`` back for ``person`` now (never for urgent kinds)."""
    return kind not in URGENT_KINDS and in_quiet_hours(person, now_ms)
