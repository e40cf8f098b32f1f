"""Calls: creation (idempotent), reading with access rules, and status changes.

Every status change goes through :meth:`CallService.apply` inside a database transaction: the life
cycle is checked (``dispatch/lifecycle.py``), the row changes, its version increments and the event row
is written in the same transaction, and so is ``call.status``, staged in the outbox
(``dispatch/publisher.py``) and published right after the commit.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import h3
from shapely.geometry import Point
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from dispatch.errors import DispatchError, forbidden, not_found
from dispatch.events import CallCreatedPayload
from dispatch.lifecycle import Actor, TransitionError, check_transition
from dispatch.publisher import EventPublisher, OutboxTransaction, as_publisher
from dispatch.zones import ZoneIndex
from models.calls import Call
from models.enums import CallStatus, Role, Urgency
from models.repositories import calls as call_repo
from models.repositories import users as user_repo
from models.types import utcnow
from realtime.broker import Broker
from realtime.errors import ErrorCode
from realtime.event_types import EventType

CALL_CELL_RESOLUTION = 9
"""H3 resolution stored with each call (~0.1 km² cells, H3 docs "Tables of cell statistics")."""
STAFF = frozenset({Role.DISPATCHER, Role.ADMIN})


@dataclass(frozen=True, slots=True)
class Who:
    """The person acting: user id and role (from the verified token)."""

    user_id: uuid.UUID
    role: Role

    @property
    def staff(self) -> bool:
        """Dispatchers and admins act on every call."""
        return self.role in STAFF


SYSTEM = Who(uuid.UUID(int=0), Role.ADMIN)
"""Stands for the dispatch loop in event rows (``actor_id`` is stored as NULL for it)."""


@dataclass(frozen=True, slots=True)
class NewCall:
    """A call to create. ``lat``/``lon`` WGS84 degrees; ``scheduled_at`` only (and always) for planned
    calls; ``patient_id`` only when staff file a call for a patient who phoned in."""

    address: str
    lat: float
    lon: float
    urgency: Urgency
    specialty: str
    symptoms: str | None = None
    scheduled_at: dt.datetime | None = None
    patient_id: uuid.UUID | None = None
    price_estimate: Decimal | None = None
    currency: str | None = None
    """ISO 4217 code of the prices (None: the column's default, RUB)."""


Attach = Callable[[OutboxTransaction, Call], Awaitable[None]]
"""Work joined to a call's creation in its transaction (:meth:`CallService.create`): its session is
``tx.session``, and it may stage events of its own."""


@dataclass
class Moved:
    """The result of a status change: the call after it and the status before it."""

    call: Call
    previous: CallStatus
    doctor_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class CallService:
    """Calls in the database of record; publishes their status changes."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        publisher: EventPublisher | Broker,
        zones: ZoneIndex,
        *,
        max_schedule_ahead: dt.timedelta = dt.timedelta(days=30),
        now: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.publisher = as_publisher(publisher, sessions)
        self.zones = zones
        self.max_schedule_ahead = max_schedule_ahead
        self.now = now

    # --- create -----------------------------------------------------------------------------------

    async def create(
        self, who: Who, new: NewCall, idempotency_key: str | None, *, attach: Attach | None = None
    ) -> tuple[Call, bool]:
        """Create a call; returns ``(call, created)``. With the same ``idempotency_key`` from the same
        creator, returns the first call and ``created=False`` (a retried request, not a new call).

        ``attach``: more work of the same transaction, awaited with the transaction and the new call once
        its row is flushed (so the idempotency key is known to be new): a planned visit's booking
        (``dispatch/booking.py``). What it raises (a refusal, an ``IntegrityError``) rolls the call back.

        Raises ``DispatchError``: 403 for roles that cannot create calls, 422 ``invalid_input`` /
        ``outside_service_area``.
        """
        patient_id = self._patient_of(who, new)
        self._check_schedule(new)
        zone = self.zones.zone_at(new.lat, new.lon)
        if zone is None and not self.zones.empty:
            raise DispatchError(
                ErrorCode.OUTSIDE_SERVICE_AREA, "this address is outside every service zone", field="lat"
            )
        async with self.publisher.transaction() as tx:
            session = tx.session
            if idempotency_key is not None:
                existing = await call_repo.find_by_idempotency_key(session, who.user_id, idempotency_key)
                if existing is not None:
                    return existing, False
            if who.staff:
                patient = await user_repo.get_user(session, patient_id)
                if patient is None or patient.role != Role.PATIENT.value:
                    raise DispatchError(
                        ErrorCode.INVALID_INPUT, "patient_id: no such patient", field="patient_id"
                    )
            now = self.now()
            call = Call(
                id=uuid.uuid4(),
                patient_id=patient_id,
                created_by=who.user_id,
                zone_id=None if zone is None else zone.id,
                idempotency_key=idempotency_key,
                address=new.address,
                location=Point(new.lon, new.lat),
                lat=new.lat,
                lon=new.lon,
                h3_cell=h3.latlng_to_cell(new.lat, new.lon, CALL_CELL_RESOLUTION),
                urgency=new.urgency.value,
                specialty=new.specialty,
                symptoms=new.symptoms,
                scheduled_at=new.scheduled_at,
                status=CallStatus.CREATED.value,
                price_estimate=new.price_estimate,
                currency=new.currency or "RUB",
                version=1,
                created_at=now,
                updated_at=now,
            )
            session.add(call)
            call_repo.add_event(
                session,
                call,
                None,
                CallStatus.CREATED.value,
                actor_id=who.user_id,
                actor_role=who.role.value,
                at=now,
            )
            try:
                await session.flush()
            except IntegrityError:
                # A concurrent request with the same idempotency key won the insert: answer with its call.
                await session.rollback()
                if idempotency_key is None:
                    raise
                async with self.sessions() as again:
                    existing = await call_repo.find_by_idempotency_key(again, who.user_id, idempotency_key)
                if existing is None:
                    raise
                return existing, False
            if attach is not None:
                await attach(tx, call)
            # Staged after the flush: a lost idempotency race above rolled back and stages nothing.
            created: CallCreatedPayload = {"call": str(call.id), "urgency": call.urgency}
            tx.dispatch(EventType.CALL_CREATED, created)
        return call, True

    def _patient_of(self, who: Who, new: NewCall) -> uuid.UUID:
        if who.role is Role.PATIENT:
            if new.patient_id is not None and new.patient_id != who.user_id:
                raise DispatchError(
                    ErrorCode.INVALID_INPUT,
                    "patient_id: patients file calls for themselves",
                    field="patient_id",
                )
            return who.user_id
        if who.staff:
            if new.patient_id is None:
                raise DispatchError(
                    ErrorCode.INVALID_INPUT, "patient_id: required when staff file a call", field="patient_id"
                )
            return new.patient_id
        raise forbidden("only patients and dispatchers create calls")

    def _check_schedule(self, new: NewCall) -> None:
        if new.urgency is Urgency.PLANNED:
            if new.scheduled_at is None:
                raise DispatchError(
                    ErrorCode.INVALID_INPUT, "scheduled_at: required for planned calls", field="scheduled_at"
                )
            now = self.now()
            if new.scheduled_at <= now:
                raise DispatchError(
                    ErrorCode.INVALID_INPUT, "scheduled_at: must be in the future", field="scheduled_at"
                )
            if new.scheduled_at > now + self.max_schedule_ahead:
                raise DispatchError(
                    ErrorCode.INVALID_INPUT, "scheduled_at: too far ahead", field="scheduled_at"
                )
        elif new.scheduled_at is not None:
            raise DispatchError(
                ErrorCode.INVALID_INPUT, "scheduled_at: only planned calls have one", field="scheduled_at"
            )

    # --- read -------------------------------------------------------------------------------------

    @staticmethod
    def actor_for(who: Who, call: Call) -> Actor:
        """The actor ``who`` is for ``call``. Raises 404 when ``who`` is no party to it (a patient does
        not even learn that another patient's call exists)."""
        if who.staff:
            return Actor.STAFF
        if who.role is Role.PATIENT and call.patient_id == who.user_id:
            return Actor.PATIENT
        if who.role is Role.DOCTOR and call.doctor_id == who.user_id:
            return Actor.DOCTOR
        raise not_found("call")

    async def get(self, who: Who, call_id: uuid.UUID) -> Call:
        """The call if ``who`` may see it. Raises 404."""
        async with self.sessions() as session:
            call = await call_repo.get_call(session, call_id)
        if call is None:
            raise not_found("call")
        self.actor_for(who, call)
        return call

    # --- status changes ---------------------------------------------------------------------------

    async def apply(
        self,
        session: AsyncSession,
        call: Call,
        to: CallStatus,
        actor: Actor,
        who: Who | None,
        *,
        reason: str | None = None,
        data: dict[str, Any] | None = None,
        change: Callable[[Call], None] | None = None,
        flush: bool = True,
    ) -> CallStatus:
        """Change ``call`` (loaded ``for_update`` in ``session``) to ``to`` and stage its event row.
        Returns the previous status. Raises ``DispatchError`` 409 ``invalid_transition`` with the current
        status and the allowed next statuses, 409 ``conflict`` when the call changed meanwhile.

        ``flush=False`` leaves the UPDATE and the history row to the session's next flush (a later
        ``apply`` in the same transaction): two changes of one transaction cost one UPDATE and one
        multi-row INSERT instead of two of each (round trips on PostgreSQL; docs/benchmarks.md, issue
        16). The version still counts each change, and the one UPDATE still requires the version read."""
        previous = CallStatus(call.status)
        try:
            check_transition(previous, to, actor)
        except TransitionError as exc:
            raise DispatchError(
                ErrorCode.INVALID_TRANSITION,
                str(exc),
                status=previous.value,
                allowed=[s.value for s in exc.allowed],
            ) from None
        now = self.now()
        call.status = to.value
        # One step per change, set here rather than by the mapper's generator (which bumps once per
        # flush): an unflushed change followed by another must leave the version two higher. The
        # mapper's UPDATE still carries "WHERE version = <the version read>" (models/calls.py).
        call.version = call.version + 1
        call.updated_at = now
        if change is not None:
            change(call)
        acting = who if who is not None and who is not SYSTEM else None
        call_repo.add_event(
            session,
            call,
            previous.value,
            to.value,
            actor_id=None if acting is None else acting.user_id,
            actor_role=None if acting is None else acting.role.value,
            reason=reason,
            data=data,
            at=now,
        )
        if not flush:
            return previous
        try:
            await session.flush()
        except StaleDataError:
            raise DispatchError(
                ErrorCode.CONFLICT, "the call changed meanwhile; read it again and retry"
            ) from None
        return previous

    async def move(
        self,
        who: Who,
        call_id: uuid.UUID,
        to: CallStatus,
        *,
        actor: Actor | None = None,
        reason: str | None = None,
        data: dict[str, Any] | None = None,
        change: Callable[[Call], None] | None = None,
        also: Callable[[OutboxTransaction, Call], None] | None = None,
    ) -> Moved:
        """One status change in its own transaction, its ``call.status`` staged with it and published
        after the commit. ``actor`` defaults to what ``who`` is for the call. ``also``: stages more
        events of the change in the same transaction (called with the changed call, after its
        ``call.status``). Raises ``DispatchError`` (404, 409)."""
        async with self.publisher.transaction() as tx:
            session = tx.session
            call = await call_repo.get_call(session, call_id, for_update=True)
            if call is None:
                raise not_found("call")
            role = actor if actor is not None else self.actor_for(who, call)
            previous = await self.apply(session, call, to, role, who, reason=reason, data=data, change=change)
            name = await self.doctor_name(session, call)
            tx.status(call, previous.value, actor=role.value, reason=reason, doctor_name=name)
            if also is not None:
                also(tx, call)
        return Moved(call, previous, name)

    @staticmethod
    async def doctor_name(session: AsyncSession, call: Call) -> str | None:
        """The full name of the call's doctor, if it has one."""
        if call.doctor_id is None:
            return None
        doctor = await user_repo.get_user(session, call.doctor_id)
        return None if doctor is None else doctor.full_name
