"""The one door through which dispatch publishes domain events.

Every event a client receives from dispatch/ or server/ (the map feed of ``realtime/map_feed.py`` aside:
it is made per process and never crosses the broker) goes through an :class:`EventPublisher`:
``publish`` (one event), ``publish_all`` (a batch, one Redis round trip), ``publish_ephemeral``
(live-only, no offset, no history: positions), and the helpers for the common shapes
(``publish_status``, ``publish_doctor``, ``publish_dispatch``). Nothing else calls the broker's
``publish*`` methods (``tests/unit/test_event_path.py`` walks the code and fails on one that does).

The next issue turns this class into the **transactional outbox writer**: events are then written in
the same database transaction as the change they announce and relayed to the broker after the commit,
so that a crash between commit and publish loses nothing. That is why there must be exactly one door:
the change of mechanism then touches this module only.

Event types are :class:`~realtime.event_types.EventType` members; the broker gets ``member.value`` (a
plain ``str``), and payloads are the plain dicts typed in ``dispatch/events.py``, so the frames are the
same bytes as when the names were literals. Publishing raises what the broker raises: ``ValueError``
(bad channel, frame too large), ``TypeError`` (unencodable payload), ``BrokerClosedError``, Redis
errors.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dispatch.events import DISPATCH_CHANNEL, CallStatusPayload
from models.calls import Call
from realtime.broker import Broker, Outgoing, Publication
from realtime.channels import call_channel, doctor_channel
from realtime.event_types import EventType

Payload = Mapping[str, Any]
"""An event's ``data``: a dict orjson encodes (the ``TypedDict`` s of ``dispatch/events.py``)."""


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a :meth:`EventPublisher.publish_all` batch: ``payload`` as ``type`` on ``channel``."""

    channel: str
    type: EventType
    payload: Payload


class EventPublisher:
    """Publishes domain events on a :class:`~realtime.broker.Broker` (see the module docstring)."""

    __slots__ = ("broker",)

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def publish(self, channel: str, event_type: EventType, payload: Payload) -> Publication:
        """Publish one event; returns its publication (offset, epoch, frame)."""
        return await self.broker.publish(channel, event_type.value, payload)

    async def publish_all(self, events: Sequence[Event]) -> list[Publication]:
        """Publish ``events`` in order as one batch (``Broker.publish_many``: one Redis round trip, not
        atomic; a bad event publishes nothing). An empty batch publishes nothing."""
        return await self.broker.publish_many([Outgoing(e.channel, e.type.value, e.payload) for e in events])

    async def publish_ephemeral(self, channel: str, event_type: EventType, payload: Payload) -> Publication:
        """Publish a live-only event (no offset, no history, at most once; the next one supersedes it).
        Stays outside the outbox in the next issue: a lost position is replaced within a second."""
        return await self.broker.publish_ephemeral(channel, event_type.value, payload)

    async def publish_status(
        self,
        call: Call,
        from_status: str | None,
        *,
        actor: str,
        reason: str | None = None,
        doctor_name: str | None = None,
        eta_s: float | None = None,
        as_of: tuple[str, int] | None = None,
    ) -> None:
        """``call.status`` on the call's channel and on ``dispatch``, in one batch. ``eta_s`` seconds
        (rounded to whole ones). ``as_of``: the ``(status, version)`` to report when the event is one of
        several committed together (the call object holds the last)."""
        status, version = (call.status, call.version) if as_of is None else as_of
        data: CallStatusPayload = {
            "call": str(call.id),
            "status": status,
            "from": from_status,
            "actor": actor,
            "reason": reason,
            "doctor": None if call.doctor_id is None else {"id": str(call.doctor_id), "name": doctor_name},
            "eta_s": None if eta_s is None else round(eta_s),
            "version": version,
        }
        await self.publish_all(
            [
                Event(call_channel(call.id), EventType.CALL_STATUS, data),
                Event(DISPATCH_CHANNEL, EventType.CALL_STATUS, data),
            ]
        )

    async def publish_doctor(
        self, doctor_id: uuid.UUID | str, event_type: EventType, payload: Payload
    ) -> None:
        """An event on the doctor's private channel ``doctor:<id>``."""
        await self.publish(doctor_channel(str(doctor_id)), event_type, payload)

    async def publish_dispatch(self, event_type: EventType, payload: Payload) -> None:
        """An event for dispatchers (``dispatch``)."""
        await self.publish(DISPATCH_CHANNEL, event_type, payload)


def as_publisher(target: Broker | EventPublisher) -> EventPublisher:
    """``target`` if it is a publisher, else a publisher on the broker ``target``. Lets services keep
    accepting a broker (tests build services on a bare broker) while publishing through the door."""
    return target if isinstance(target, EventPublisher) else EventPublisher(target)
