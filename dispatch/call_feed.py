"""The process's own follower of call status changes: every ``call.status`` on the ``dispatch`` channel
handed to a callback (the location ingest, which stops tracking a call the moment it ends).

Every process subscribes once, through its hub, like a dispatcher's console would. Delivery is the
broker's: live, at most once. A missed event (a broker queue overflow, a Redis reconnect) is not
recovered here; the ingest then learns the doctor's new state from its periodic state read instead
(``state_refresh_ms``, 2 s).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import orjson

from dispatch.events import DISPATCH_CHANNEL
from realtime.broker import Publication
from realtime.event_types import EventType
from realtime.hub import Hub

log = logging.getLogger("tot.call_feed")

StatusCallback = Callable[[str, str, str | None], None]
"""``(call id, new status, the call's doctor id or None)``; synchronous, must not raise."""


class CallStatusFollower:
    """A hub subscriber (:class:`~realtime.hub.Subscriber`; no socket, no send queue) on
    :data:`~dispatch.events.DISPATCH_CHANNEL` that calls ``on_status`` for each ``call.status`` event.
    Add it with ``hub.add(CallStatusFollower.CHANNEL, follower)``. ``seen``: events followed."""

    __slots__ = ("_on_status", "seen")
    CHANNEL = DISPATCH_CHANNEL
    id = "call-status-follower"
    """Names the subscriber in the hub's logs."""

    def __init__(self, on_status: StatusCallback) -> None:
        self._on_status = on_status
        self.seen = 0

    def deliver(self, publication: Publication, text: str) -> bool:
        """Take one live publication of the channel (never asks the hub for a recovery)."""
        if publication.type != EventType.CALL_STATUS:
            return True
        try:
            data = orjson.loads(text)["data"]
            doctor = data.get("doctor")
            doctor_id = doctor.get("id") if isinstance(doctor, dict) else None
            self.seen += 1
            doctor_id = None if doctor_id is None else str(doctor_id)
            self._on_status(str(data["call"]), str(data["status"]), doctor_id)
        except Exception:
            log.exception("could not follow a call status", extra={"channel": publication.channel})
        return True

    async def recover(self, channel: str) -> None:
        """Nothing to recover: delivery here is live only (see the module docstring), so a broker
        ``Resync`` of the channel is let go."""


async def follow(hub: Hub, follower: CallStatusFollower, retry_s: float = 5.0) -> None:
    """Subscribe ``follower`` through ``hub``, retrying every ``retry_s`` seconds while the engine is
    unreachable (a server starts, and reports itself degraded, with Redis down); returns once
    subscribed. Meanwhile the ingest ends tracking through its state reads alone."""
    while True:
        try:
            await hub.add(CallStatusFollower.CHANNEL, follower)
            return
        except Exception:
            log.warning("cannot follow call statuses yet; retrying", exc_info=True)
            await asyncio.sleep(retry_s)
