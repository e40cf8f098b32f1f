"""SOS: alerts that cannot be missed.

A doctor raises ``danger`` or ``complex_call`` (with a position, or the last one the server has); a
patient raises ``emergency`` on their active call (at the call's address; the call also becomes an
emergency, so its offers go out as a broadcast). The alert is stored first; then it goes at once to the
``sos`` channel (every online dispatcher) and to the private channel of every doctor with a fresh
position within ``radius_m``; and it comes back every ``repeat_s`` until a dispatcher acknowledges it.
The repeat is an entry in the engine's ``sos`` Deadlines queue, so it survives the death of the process
that raised it (and, for the memory engine, :meth:`SosService.resume` re-arms open alerts at start-up).
Every step is written to ``sos_events`` (the audit).

Channels: ``sos`` gets ``sos.raised`` (``repeat`` counts the re-sends), ``sos.acknowledged``,
``sos.resolved``; nearby doctors get ``sos.nearby``; the raiser is told on ``doctor:<id>`` or
``call:<id>`` (``sos.acknowledged``, ``sos.resolved``).

Here: raising and repeating (the repeats run by the shared deadline worker). Who gets an alert:
dispatch/sos_delivery.py; the dispatchers' side (acknowledge, resolve, read, list):
dispatch/sos_desk.py; the SQL: models/repositories/sos.py.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shapely.geometry import Point
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from dispatch.calls import CallService, Who
from dispatch.deadline_worker import DeadlineWorker, Pacing
from dispatch.deadlines import Claim, Deadlines
from dispatch.errors import DispatchError, forbidden, not_found
from dispatch.lifecycle import FINAL
from dispatch.publisher import EventPublisher, as_publisher
from dispatch.sos_delivery import doctors_nearby, stage_nearby, stage_raised
from dispatch.sos_desk import REPEAT, SOS_CHANNEL, SosDesk, alert_json, audit, repeat_key
from geo.location_index import LocationIndex
from models.enums import CallStatus, Role, SosKind, SosStatus, Urgency
from models.repositories import calls as call_repo
from models.repositories import sos as sos_repo
from models.sos import SosAlert
from models.types import utcnow
from realtime.broker import Broker
from realtime.errors import ErrorCode

log = logging.getLogger("tot.sos")

__all__ = ["SOS_CHANNEL", "SosService", "SosSettings", "alert_json"]

DOCTOR_KINDS = frozenset({SosKind.DANGER, SosKind.COMPLEX_CALL})
EMERGENCY_ATTEMPTS = 5
"""Tries at raising a call's urgency when a concurrent change of the call wins the version check."""
REPEAT_PACING = Pacing(idle_s=0.2, limit=50, eager=False, concurrent=False)
"""How the repeat worker polls the engine's own ``sos`` Deadlines queue (not the offer loop's): as SOS
always did, repeats are handled one after the other, then a fixed 0.2 s sleep. Repeats come due every
``repeat_s`` (seconds; 15 by default), so waking for the next due entry would buy nothing; handling
them in turn inside ``run`` keeps a cancelled ``run`` task the only thing to stop (the server has no
``stop`` for SOS)."""


@dataclass(frozen=True, slots=True)
class SosSettings:
    """``radius_m``: doctors within it get the alert (metres); ``repeat_s``: re-send interval until
    acknowledged (seconds); ``position_max_age_s``: positions older than this do not count as "nearby"."""

    radius_m: float = 3_000.0
    repeat_s: float = 15.0
    position_max_age_s: int = 120


class SosService:
    """Raising, delivering, repeating, acknowledging and resolving SOS alerts."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        publisher: EventPublisher | Broker,
        locations: LocationIndex,
        deadlines: Deadlines,
        calls: CallService,
        settings: SosSettings,
        *,
        on_emergency: Callable[[uuid.UUID], Any] | None = None,
        now: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.publisher = as_publisher(publisher, sessions)
        self.locations = locations
        self.deadlines = deadlines
        self.calls = calls
        self.settings = settings
        self.on_emergency = on_emergency
        self.now = now
        self.desk = SosDesk(sessions, self.publisher, deadlines, now)
        self.worker = DeadlineWorker(
            deadlines,
            self._now_ms,
            name="SOS repeats",
            pacing=REPEAT_PACING,
            on_resume=self.resume,
            logger=log,
        )
        self.worker.route(REPEAT, self._on_deadline)

    def _now_ms(self) -> int:
        return int(self.now().timestamp() * 1000)

    # --- raising ----------------------------------------------------------------------------------

    async def raise_alert(
        self,
        who: Who,
        kind: SosKind,
        *,
        lat: float | None = None,
        lon: float | None = None,
        call_id: uuid.UUID | None = None,
        message: str | None = None,
    ) -> dict[str, Any]:
        """Store the alert, deliver it, arm its repeat. Raises ``DispatchError`` 403 (wrong kind for the
        role), 404 (call), 409 (the call is over), 422 (no position known)."""
        if who.role is Role.DOCTOR and kind not in DOCTOR_KINDS:
            raise forbidden("doctors raise danger or complex_call")
        if who.role is Role.PATIENT and kind is not SosKind.EMERGENCY:
            raise forbidden("patients raise emergency")
        if who.role not in (Role.DOCTOR, Role.PATIENT):
            raise forbidden("only doctors and patients raise an SOS")
        now = self.now()
        async with self.publisher.transaction() as tx:
            session = tx.session
            if who.role is Role.PATIENT:
                if call_id is None:
                    raise DispatchError(
                        ErrorCode.INVALID_INPUT, "call: an emergency is raised on your call", field="call"
                    )
                call = await call_repo.get_call(session, call_id)
                if call is None or call.patient_id != who.user_id:
                    raise not_found("call")
                if CallStatus(call.status) in FINAL:
                    raise DispatchError(
                        ErrorCode.INVALID_TRANSITION, f"the call is {call.status}", status=call.status
                    )
                lat, lon = call.lat, call.lon
            elif call_id is not None and await call_repo.get_call(session, call_id) is None:
                raise not_found("call")  # a doctor's alert about a call: it must exist (its foreign key)
            if who.role is not Role.PATIENT and (lat is None or lon is None):
                known = await self.locations.get(str(who.user_id))
                if known is None:
                    raise DispatchError(
                        ErrorCode.INVALID_INPUT, "lat/lon: no position known; send yours", field="lat"
                    )
                lat, lon = known.lat, known.lon
            alert = SosAlert(
                id=uuid.uuid4(),
                raised_by=who.user_id,
                call_id=call_id,
                kind=kind.value,
                status=SosStatus.OPEN.value,
                location=Point(lon, lat),
                lat=lat,
                lon=lon,
                message=message,
                created_at=now,
            )
            sos_repo.add_alert(session, alert)
            audit(session, alert.id, "raised", who, {"kind": kind.value}, now)
            # The dispatchers first: sos.raised commits with the alert.
            data = stage_raised(tx, alert, 0)
            # Armed in the same breath as the row: a process dying right after the commit still leaves
            # the repeat to another process. An engine that cannot be reached does not refuse an SOS:
            # the alert commits (its events wait in the outbox) and the resume re-arms it.
            await self.publisher.follow_up("arm an SOS repeat", self._arm(alert.id))
        try:
            delivered = await self._deliver(alert, data, "delivered")
        except Exception as exc:  # committed: the repeat delivers it to the doctors nearby
            self.publisher.stats.followup_failures += 1
            log.warning("SOS delivery to doctors nearby failed", extra={"error": type(exc).__name__})
            delivered = {"repeat": 0, "doctors": []}
        if who.role is Role.PATIENT and call_id is not None:
            await self._make_emergency(call_id)
        return {**alert_json(alert), "delivered": delivered}

    async def _make_emergency(self, call_id: uuid.UUID) -> None:
        """A patient's emergency raises the call's urgency; a call still being dispatched is offered
        again as a broadcast. Raises ``StaleDataError`` when the call kept changing under it
        ``EMERGENCY_ATTEMPTS`` times in a row."""
        for attempt in range(EMERGENCY_ATTEMPTS):
            try:
                status = await self._raise_urgency(call_id)
                break
            except StaleDataError:
                # SQLite ignores FOR UPDATE: a status change committed between our read and our write
                # (typically the doctor's en_route, sent as the patient raises the alarm on assignment)
                # wins the version check. The alert is stored and delivered already; read the call again.
                if attempt == EMERGENCY_ATTEMPTS - 1:
                    raise
        if self.on_emergency is not None and status in (
            CallStatus.SEARCHING.value,
            CallStatus.CREATED.value,
        ):
            await self.on_emergency(call_id)

    async def _raise_urgency(self, call_id: uuid.UUID) -> str | None:
        """One attempt: the call's status after its urgency became ``emergency`` (None: nothing to do)."""
        async with self.sessions.begin() as session:
            call = await call_repo.get_call(session, call_id, for_update=True)
            if call is None or call.urgency == Urgency.EMERGENCY.value:
                return None
            call.urgency = Urgency.EMERGENCY.value
            call_repo.add_event(
                session,
                call,
                call.status,
                call.status,
                actor_id=None,
                actor_role=None,
                reason="patient raised an emergency",
                data={"urgency": "emergency"},
                at=self.now(),
            )
        return call.status

    async def _deliver(self, alert: SosAlert, data: dict[str, Any], action: str) -> dict[str, Any]:
        """Find the doctors nearby (the live index, with no session open: a session holds the embedded
        database, models/sqlite_driver.py), then stage their ``sos.nearby`` with the audit row
        ``action`` in one transaction. Returns the audit's data. Raises engine and database errors."""
        nearby = await doctors_nearby(
            self.locations, alert, self.settings.radius_m, self.settings.position_max_age_s
        )
        async with self.publisher.transaction() as tx:
            delivered = stage_nearby(tx, data, nearby)
            audit(tx.session, alert.id, action, None, delivered, self.now())
        return delivered

    # --- repeating --------------------------------------------------------------------------------

    async def _arm(self, sos_id: uuid.UUID) -> None:
        due = int((self.now().timestamp() + self.settings.repeat_s) * 1000)
        await self.deadlines.schedule(repeat_key(sos_id), due)

    async def _on_deadline(self, ident: str, _claim: Claim) -> None:
        """The ``sos`` entry of the alert ``ident`` came due (a Deadlines claim): :meth:`repeat`."""
        await self.repeat(uuid.UUID(ident))

    async def repeat(self, sos_id: uuid.UUID) -> None:
        """Re-send an alert nobody acknowledged yet, and arm the next repeat. The doctors nearby are
        found with no session open (a session holds the embedded database, models/sqlite_driver.py);
        the re-send's events and its audit row then commit together."""
        async with self.sessions() as session:
            alert = await sos_repo.get_alert(session, sos_id)
            if alert is None or alert.status != SosStatus.OPEN.value:
                return
            count = await sos_repo.count_events(session, sos_id, "repeated")
        repeat = count + 1
        await self._arm(sos_id)
        nearby = await doctors_nearby(
            self.locations, alert, self.settings.radius_m, self.settings.position_max_age_s
        )
        async with self.publisher.transaction() as tx:
            data = stage_raised(tx, alert, repeat)
            delivered = stage_nearby(tx, data, nearby)
            audit(tx.session, sos_id, "repeated", None, delivered, self.now())

    async def run(self) -> None:
        """Claim due repeats and run them, until cancelled (one worker per process; see
        :data:`REPEAT_PACING`). A failed repeat comes back after its lease."""
        await self.worker.run()

    async def resume(self) -> int:
        """Arm a repeat for every open alert that has none (at start-up: the memory engine loses its
        entries with the process; after the engine was lost; by the repair sweep). Returns how many it
        armed (0 when every open alert had its entry)."""
        async with self.sessions() as session:
            open_ids = await sos_repo.open_alert_ids(session)
        missing = [sos_id for sos_id in open_ids if await self.deadlines.get(repeat_key(sos_id)) is None]
        if not missing:
            return 0
        # Read again after the entries (as OfferLoop.resume does): an alert acknowledged meanwhile had
        # its entry removed, and is not a lost repeat.
        async with self.sessions() as session:
            still_open = set(await sos_repo.open_alert_ids(session))
        armed = 0
        for sos_id in missing:
            if sos_id in still_open and await self.deadlines.get(repeat_key(sos_id)) is None:
                await self.deadlines.schedule(repeat_key(sos_id), self._now_ms())
                armed += 1
        return armed

    # --- dispatchers (dispatch/sos_desk.py) -------------------------------------------------------

    async def acknowledge(self, who: Who, sos_id: uuid.UUID) -> dict[str, Any]:
        """A dispatcher has seen it: the repeats stop. Acknowledging twice is harmless."""
        return await self.desk.acknowledge(who, sos_id)

    async def resolve(self, who: Who, sos_id: uuid.UUID, note: str) -> dict[str, Any]:
        """Close the alert with a note (acknowledging it too if nobody had)."""
        return await self.desk.resolve(who, sos_id, note)

    async def get(self, who: Who, sos_id: uuid.UUID) -> dict[str, Any]:
        """An alert with its audit trail: staff, or whoever raised it."""
        return await self.desk.get(who, sos_id)

    async def list_open(
        self, who: Who, include_resolved: bool = False, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Alerts for the dispatchers' queue, newest first: open and acknowledged (resolved on request)."""
        return await self.desk.list_open(who, include_resolved, limit)
