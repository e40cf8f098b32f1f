"""The dispatchers' side of SOS: acknowledge (the repeats stop), resolve with a note, read, list.

Also what both sides of SOS share: how an alert is shown (:func:`alert_json`), its channel, its
repeat's Deadlines key and its audit rows.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.calls import SYSTEM, Who
from dispatch.deadlines import Deadlines
from dispatch.errors import DispatchError, forbidden, not_found
from dispatch.events import epoch_ms
from dispatch.publisher import EventPublisher, as_publisher
from models.enums import SosKind, SosStatus
from models.repositories import sos as sos_repo
from models.sos import SosAlert
from realtime.broker import Broker
from realtime.channels import call_channel, doctor_channel
from realtime.errors import ErrorCode
from realtime.event_types import EventType

SOS_CHANNEL = "sos"
REPEAT = "sos"
"""Deadline kind of an alert's next repeat: key ``sos:<alert id>``, in the engine's ``sos`` queue."""


def repeat_key(sos_id: uuid.UUID) -> str:
    """The Deadlines key of the alert's next repeat."""
    return f"{REPEAT}:{sos_id}"


def alert_json(alert: SosAlert) -> dict[str, Any]:
    """An alert as the API and events show it (times in epoch milliseconds)."""
    return {
        "id": str(alert.id),
        "kind": alert.kind,
        "status": alert.status,
        "raised_by": str(alert.raised_by),
        "call": None if alert.call_id is None else str(alert.call_id),
        "lat": alert.lat,
        "lon": alert.lon,
        "message": alert.message,
        "created_at": epoch_ms(alert.created_at),
        "acknowledged_at": epoch_ms(alert.acknowledged_at),
        "acknowledged_by": None if alert.acknowledged_by is None else str(alert.acknowledged_by),
        "resolved_at": epoch_ms(alert.resolved_at),
        "resolved_by": None if alert.resolved_by is None else str(alert.resolved_by),
        "resolution_note": alert.resolution_note,
    }


def audit(
    session: AsyncSession,
    sos_id: uuid.UUID,
    action: str,
    who: Who | None,
    data: dict[str, Any] | None,
    at: dt.datetime,
) -> None:
    """Add an audit row for ``action`` by ``who`` (None or SYSTEM: the server itself)."""
    acting = who if who is not None and who is not SYSTEM else None
    sos_repo.add_event(
        session,
        sos_id,
        action,
        actor_id=None if acting is None else acting.user_id,
        actor_role=None if acting is None else acting.role.value,
        data=data,
        at=at,
    )


class SosDesk:
    """Acknowledging, resolving, reading and listing alerts (staff; the raiser may read theirs)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        publisher: EventPublisher | Broker,
        deadlines: Deadlines,
        now: Callable[[], dt.datetime],
    ) -> None:
        self.sessions = sessions
        self.publisher = as_publisher(publisher, sessions)
        self.deadlines = deadlines
        self.now = now

    async def acknowledge(self, who: Who, sos_id: uuid.UUID) -> dict[str, Any]:
        """A dispatcher has seen it: the repeats stop. Acknowledging twice is harmless. Returns the
        alert (:func:`alert_json`). Raises 403 (not staff), 404 (no such alert)."""
        return await self._staff_step(who, sos_id, "acknowledged", None)

    async def resolve(self, who: Who, sos_id: uuid.UUID, note: str) -> dict[str, Any]:
        """Close the alert with a note (acknowledging it too if nobody had). Raises 403, 404, 422
        (empty note), 409 ``invalid_transition`` (resolved already)."""
        if not note.strip():
            raise DispatchError(ErrorCode.INVALID_INPUT, "note: say how it was resolved", field="note")
        return await self._staff_step(who, sos_id, "resolved", note.strip())

    async def _staff_step(self, who: Who, sos_id: uuid.UUID, action: str, note: str | None) -> dict[str, Any]:
        if not who.staff:
            raise forbidden("only dispatchers acknowledge and resolve SOS alerts")
        now = self.now()
        async with self.publisher.transaction() as tx:
            session = tx.session
            alert = await sos_repo.get_alert(session, sos_id, for_update=True)
            if alert is None:
                raise not_found("sos")
            if alert.status == SosStatus.RESOLVED.value:
                if action == "acknowledged":
                    return alert_json(alert)
                raise DispatchError(
                    ErrorCode.INVALID_TRANSITION, "the alert is resolved already", status=alert.status
                )
            if alert.acknowledged_at is None:
                alert.acknowledged_at, alert.acknowledged_by = now, who.user_id
                alert.status = SosStatus.ACKNOWLEDGED.value
                audit(session, sos_id, "acknowledged", who, None, now)
            elif action == "acknowledged":
                return alert_json(alert)
            if action == "resolved":
                alert.status = SosStatus.RESOLVED.value
                alert.resolved_at, alert.resolved_by, alert.resolution_note = now, who.user_id, note
                audit(session, sos_id, "resolved", who, {"note": note}, now)
            data = alert_json(alert)
            event = EventType.SOS_RESOLVED if action == "resolved" else EventType.SOS_ACKNOWLEDGED
            tx.stage(SOS_CHANNEL, event, data)
            raiser = (
                call_channel(alert.call_id)
                if alert.call_id is not None and alert.kind == SosKind.EMERGENCY.value
                else doctor_channel(alert.raised_by)
            )
            tx.stage(raiser, event, data)
        # Committed: a repeat left armed by an engine failure finds the alert acknowledged and ends.
        await self.publisher.follow_up("cancel an SOS repeat", self.deadlines.cancel(repeat_key(sos_id)))
        return data

    async def get(self, who: Who, sos_id: uuid.UUID) -> dict[str, Any]:
        """An alert with its audit trail (``audit``: actions, actors, epoch-ms times): staff, or
        whoever raised it. Raises 404 otherwise."""
        async with self.sessions() as session:
            alert = await sos_repo.get_alert(session, sos_id)
            if alert is None or not (who.staff or alert.raised_by == who.user_id):
                raise not_found("sos")
            events = await sos_repo.events_of(session, sos_id)
        trail = [
            {
                "action": e.action,
                "actor_id": None if e.actor_id is None else str(e.actor_id),
                "actor_role": e.actor_role,
                "data": e.data,
                "at": epoch_ms(e.created_at),
            }
            for e in events
        ]
        return {**alert_json(alert), "audit": trail}

    async def list_open(
        self, who: Who, include_resolved: bool = False, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Alerts for the dispatchers' queue, newest first: open and acknowledged (resolved on request).
        Raises 403 (not staff)."""
        if not who.staff:
            raise forbidden("only dispatchers list SOS alerts")
        async with self.sessions() as session:
            alerts = await sos_repo.list_alerts(session, include_resolved=include_resolved, limit=limit)
            return [alert_json(a) for a in alerts]
