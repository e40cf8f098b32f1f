"""What the client hands the app: stream positions, events and the other items of ``events()``,
and the answer to a subscribe. Frozen values; the client builds them from the server's frames."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Position:
    """A place in a channel's stream: the last offset seen (integers from 1) in ``epoch``."""

    offset: int
    epoch: str


@dataclass(frozen=True, slots=True)
class Event:
    """A channel event. ``data`` is the event's JSON payload. ``offset``/``epoch`` are None for
    ephemeral events (e.g. ``doctor.position``), which are live only and never recovered."""

    channel: str
    type: str
    data: Any
    offset: int | None
    epoch: str | None


@dataclass(frozen=True, slots=True)
class RecoveryFailed:
    """The server could not fill a gap on ``channel`` (history trimmed or lost: ``reason``). Events
    continue after ``position``; re-read the channel's state over REST."""

    channel: str
    reason: str
    position: Position


@dataclass(frozen=True, slots=True)
class SubscriptionLost:
    """The client forgot ``channel``: resubscribing it after a reconnect was refused (``code`` is the
    error code, e.g. ``forbidden``: the call was reassigned), or the server ended the subscription
    (``code`` is the ``unsubscribed`` frame's reason, e.g. ``unassigned``, or ``doctor_channel_left``
    for a doctor's call channels once ``doctor:<id>`` was unsubscribed). ``position`` is the last one
    seen."""

    channel: str
    code: str
    message: str
    position: Position


ClientEvent = Event | RecoveryFailed | SubscriptionLost


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The answer to :meth:`TotClient.subscribe`. ``recovered``: everything after ``since`` follows
    as events (``position`` is then the stream's current end); False without ``since`` or when history
    could not fill the gap (``reason``), and events follow after ``position``."""

    channel: str
    recovered: bool
    position: Position
    reason: str | None = None
