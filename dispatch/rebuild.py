"""Rebuild the live engine from the database, after the engine was lost (a Redis that came back empty,
another Redis answering, every start of the memory engine).

The database of record holds the truth; the engine is a cache of part of it. What the database knows
is written back (idempotent: run it twice and the second run writes nothing):

1. **Doctor states**, by priority: ``busy`` (ref = call id) for the doctor of every call in
   ``assigned``/``en_route``/``arrived``/``in_progress``; ``offered`` (ref = offer id) for the doctor
   of every pending offer; else the availability the doctor last chose
   (``doctor_profiles.chosen_status``; ``available`` only while verified). Each verified doctor
   restored gets their specialties back in the live index first, so that a restored ``available``
   doctor is searchable by specialty at once. Written with :meth:`DoctorStates.restore`, which leaves
   alone a doctor changed since the engine came back (a re-announce, an offer of the new life).
   Positions are not in the database: they come back as the doctors' apps send fixes, and when each
   process asks its connected doctors to re-announce (``server/ws/gateway.py``).
2. **Deadlines**, by the services' own re-arming (:meth:`OfferLoop.resume`: the step of every call
   still to dispatch, planned calls at their lead time, the expiry of every pending offer;
   :meth:`SosService.resume`: the repeat of every unacknowledged SOS). Doctor states come first: a
   step re-armed at once searches among the restored doctors.

:class:`Rebuild` counts what it did (``totals``, read by the server's metrics) and logs one line per
run (counts only, no personal data). ``dispatch/engine_watch.py`` decides when it runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.doctor_states import DoctorStates, Restore
from dispatch.lifecycle import DOCTOR_ON_CALL
from geo.location_index import LocationIndex
from models.doctors import DoctorProfile
from models.enums import DoctorStatus
from models.repositories import calls as call_repo
from models.repositories import doctors as doctor_repo
from models.repositories import offers as offer_repo

log = logging.getLogger("tot.engine")

SPECIALTIES_AT_ONCE = 100
"""``set_specialties`` calls in flight at once while restoring (one Redis script each)."""
SOS = "sos"
"""Kind under which re-armed SOS repeats are counted (the offer loop counts ``step`` and ``offer``)."""


def chosen(profile: DoctorProfile | None) -> DoctorStatus:
    """The status a doctor is restored or freed to when nothing holds them: the availability they last
    chose (``doctor_profiles.chosen_status``), ``available`` only while verified (a revoked doctor is
    ``paused``), ``offline`` without a profile or a readable choice."""
    if profile is None:
        return DoctorStatus.OFFLINE
    try:
        status = DoctorStatus(profile.chosen_status)
    except ValueError:
        return DoctorStatus.OFFLINE
    if status not in (DoctorStatus.AVAILABLE, DoctorStatus.PAUSED):
        return DoctorStatus.OFFLINE
    if status is DoctorStatus.AVAILABLE and not profile.verified:
        return DoctorStatus.PAUSED
    return status


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What one run did: ``doctors`` restored by status (only those written: a doctor changed since
    the engine came back is not), ``specialties`` doctors whose specialties went back to the index,
    ``deadlines`` re-armed by kind (``step``, ``offer``, ``sos``), ``took_ms`` wall milliseconds."""

    doctors: dict[str, int] = field(default_factory=dict)
    specialties: int = 0
    deadlines: dict[str, int] = field(default_factory=dict)
    took_ms: float = 0.0


class Rebuild:
    """Writes what the database knows into the live engine (see the module docstring).

    ``sessions``: the database; ``states``/``locations``: the engine's roles; ``rearm``: the services'
    re-arming hooks, each returning how many entries it armed (``{kind: n}``, or ``n`` counted as
    :data:`SOS`): ``[offer_loop.resume, sos.resume]``."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        states: DoctorStates,
        locations: LocationIndex,
        rearm: list[Callable[[], Awaitable[dict[str, int] | int]]],
    ) -> None:
        self.sessions = sessions
        self.states = states
        self.locations = locations
        self.rearm_hooks = rearm
        self.totals: Counter[str] = Counter()
        """Since start: ``rebuilds``, ``doctors:<status>`` restored, ``deadlines:<kind>`` re-armed."""

    async def run(self) -> RebuildReport:
        """Restore doctor states, then deadlines. Raises database and engine errors (a partial run is
        safe to repeat: the watcher runs it again)."""
        started = time.perf_counter()
        doctors, specialties = await self.restore_doctors()
        deadlines = await self.rearm()
        report = RebuildReport(
            doctors, specialties, deadlines, round((time.perf_counter() - started) * 1e3, 1)
        )
        self.totals["rebuilds"] += 1
        log.warning(
            "live engine rebuilt from the database",
            extra={"doctors": doctors, "deadlines": deadlines, "took_ms": report.took_ms},
        )
        return report

    async def restore_doctors(self) -> tuple[dict[str, int], int]:
        """Doctor states and specialties (step 1 of the module docstring). Returns ``({status: n}
        written, doctors whose specialties were set)``."""
        async with self.sessions() as session:
            on_calls = await call_repo.doctors_on_calls(session, [s.value for s in DOCTOR_ON_CALL])
            pending = await offer_repo.all_pending(session)
            on_shift = {p.user_id: p for p in await doctor_repo.profiles_on_shift(session)}
            held = [doctor for doctor, _ in on_calls] + [offer.doctor_id for offer in pending]
            profiles = on_shift | await doctor_repo.profiles_by_user(
                session, [d for d in held if d not in on_shift]
            )
        entries: dict[uuid.UUID, Restore] = {}
        for doctor, call_id in on_calls:
            entries.setdefault(doctor, Restore(str(doctor), DoctorStatus.BUSY, str(call_id)))
        for offer in pending:
            entries.setdefault(
                offer.doctor_id, Restore(str(offer.doctor_id), DoctorStatus.OFFERED, str(offer.id))
            )
        for doctor, profile in on_shift.items():
            status = chosen(profile)
            if status is not DoctorStatus.OFFLINE:
                entries.setdefault(doctor, Restore(str(doctor), status))
        verified = [p for d, p in profiles.items() if d in entries and p.verified]
        for start in range(0, len(verified), SPECIALTIES_AT_ONCE):
            chunk = verified[start : start + SPECIALTIES_AT_ONCE]
            await asyncio.gather(
                *(self.locations.set_specialties(str(p.user_id), p.specialties) for p in chunk)
            )
        written = set(await self.states.restore(list(entries.values())))
        counts: Counter[str] = Counter(e.status.value for e in entries.values() if e.doctor_id in written)
        for name, n in counts.items():
            self.totals[f"doctors:{name}"] += n
        return dict(counts), len(verified)

    async def rearm(self) -> dict[str, int]:
        """Deadlines (step 2 of the module docstring): every hook; returns what they armed by kind."""
        armed: Counter[str] = Counter()
        for hook in self.rearm_hooks:
            result = await hook()
            armed.update(result if isinstance(result, dict) else {SOS: result})
        for kind, n in armed.items():
            self.totals[f"deadlines:{kind}"] += n
        return {kind: n for kind, n in armed.items() if n}
