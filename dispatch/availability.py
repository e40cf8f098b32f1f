"""A doctor's availability: who may take calls (the verified-doctors rule) and the moves a doctor
makes between ``available``, ``paused`` and ``offline`` (the socket's ``doctor.status`` op).

``offered`` and ``busy`` belong to the dispatch loop (``dispatch/offer_loop.py``); a doctor in one of
them cannot change status here until the loop lets go. Every device of the doctor follows a change on
the doctor's channel (``doctor:<id>``, event ``doctor.status``).

The live engine's compare-and-set decides whether a move is allowed; once it has, the choice is
persisted (``doctor_profiles.chosen_status``, from which a lost engine is rebuilt) with its
``doctor.status`` event in one transaction (the outbox, ``dispatch/publisher.py``), shared by the
changes of other doctors made within the same 25 ms (``dispatch/status_writes.py``: a connect burst
of thousands of shift starts is a few dozen transactions, not thousands); the doctor is answered once
it has committed. An engine that cannot be reached refuses the move with ``unavailable`` (retry),
nothing changed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.doctor_states import DoctorState, DoctorStates
from dispatch.errors import DispatchError
from dispatch.events import DoctorStatusPayload
from dispatch.publisher import EventPublisher, as_publisher
from dispatch.status_writes import StatusChange, StatusWriter
from geo.location_index import LocationIndex
from models.enums import DoctorStatus
from models.repositories import doctors as doctor_repo
from models.types import utcnow
from realtime.broker import Broker
from realtime.errors import ErrorCode

TRANSITIONS: dict[str, frozenset[DoctorStatus]] = {
    "available": frozenset({DoctorStatus.OFFLINE, DoctorStatus.PAUSED, DoctorStatus.AVAILABLE}),
    "paused": frozenset({DoctorStatus.OFFLINE, DoctorStatus.AVAILABLE, DoctorStatus.PAUSED}),
    "offline": frozenset({DoctorStatus.AVAILABLE, DoctorStatus.PAUSED, DoctorStatus.OFFLINE}),
}
"""The status a doctor asks for -> the statuses they may ask it from (asking for the current one is a
no-op that still answers; ``offered`` and ``busy`` are absent: the dispatch loop holds those)."""

ENGINE_ERRORS: tuple[type[Exception], ...] = (RedisError, OSError, TimeoutError)
"""What the live engine raises when it cannot be reached (Redis down, failing over, too slow)."""


@dataclass(frozen=True, slots=True)
class Admission:
    """What a connecting doctor's profile says: ``verified`` (may become available) and their
    ``specialties`` (registered in the live index only when verified)."""

    verified: bool
    specialties: tuple[str, ...]


class Availability:
    """The availability rules of doctors.

    ``sessions``: the database. ``states``: the doctors' live states. ``locations``: the live index
    (which holds each verified doctor's specialties for the search). ``publisher``: where changes are
    announced (a bare broker is wrapped in one). ``on_change``: called with the doctor id (``str``)
    after a status change, synchronously (the location ingest drops its cached state of the doctor).
    ``now``: the clock of ``chosen_status_at``. ``writes``: the batch writer of the changes (default:
    one on ``publisher`` with its default window; stop it with ``await writes.aclose()``)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        states: DoctorStates,
        locations: LocationIndex,
        publisher: EventPublisher | Broker,
        on_change: Callable[[str], None],
        *,
        now: Callable[[], dt.datetime] = utcnow,
        writes: StatusWriter | None = None,
    ) -> None:
        self.sessions = sessions
        self.states = states
        self.locations = locations
        self.publisher = as_publisher(publisher, sessions)
        self.on_change = on_change
        self.now = now
        self.writes = writes if writes is not None else StatusWriter(self.publisher)

    async def admit(self, doctor_id: uuid.UUID) -> Admission | None:
        """A doctor connects: their profile (None without one); a verified doctor's specialties go to
        the live index, so that the search can match them. Raises database and engine errors."""
        async with self.sessions() as db:
            profile = await doctor_repo.get_profile(db, doctor_id)
        if profile is None:
            return None
        if profile.verified:
            await self.locations.set_specialties(str(doctor_id), profile.specialties)
        return Admission(profile.verified, tuple(profile.specialties))

    async def set_status(self, doctor_id: str, wanted: object, *, verified: bool) -> DoctorState:
        """Move doctor ``doctor_id`` to ``wanted`` (``"available"``, ``"paused"`` or ``"offline"``) and
        announce it on ``doctor:<id>`` (data ``{"status", "version", "since"}``, since in epoch ms).
        ``verified``: the doctor's profile says an admin verified them (only then ``available``).

        Returns the new state. Raises :class:`DispatchError` ``invalid_input`` (field ``status``) for
        another value, ``forbidden`` for an unverified doctor asking for ``available`` or a doctor in
        ``offered``/``busy``, ``unavailable`` (retry) when the live engine cannot be reached (nothing
        changed); database errors of the change's own transaction pass through (a batch that failed
        is written again change by change: see ``dispatch/status_writes.py``). Returns only once the
        change is committed."""
        if not isinstance(wanted, str) or wanted not in TRANSITIONS:
            raise DispatchError(
                ErrorCode.INVALID_INPUT, "status must be available, paused or offline", field="status"
            )
        if wanted == "available" and not verified:
            raise DispatchError(ErrorCode.FORBIDDEN, "an admin has not verified you yet")
        try:
            result = await self.states.compare_and_set(
                doctor_id, expected=TRANSITIONS[wanted], new=DoctorStatus(wanted)
            )
        except ENGINE_ERRORS:
            raise DispatchError(
                ErrorCode.UNAVAILABLE, "the live engine cannot be reached; nothing changed, retry"
            ) from None
        if not result.ok:
            raise DispatchError(
                ErrorCode.FORBIDDEN, f"you are {result.state.status.value}; finish that first"
            )
        self.on_change(doctor_id)
        state = result.state
        # The choice is the truth a lost engine is rebuilt from; every device of the doctor (and the
        # console) follows it on the doctor's channel. Written with the other changes of the moment.
        payload: DoctorStatusPayload = {
            "status": state.status.value,
            "version": state.version,
            "since": state.since_ms,
        }
        await self.writes.write(StatusChange(doctor_id, wanted, self.now(), payload))
        return state
