"""The repair sweep: every ``repair_interval_s``, one process brings the live engine back in line with
the database where a crash left the two apart.

The offer loop writes the engine and the database one after the other (never atomically), and arms a
Deadlines entry before every commit that leaves work to do, so that a process dying between two writes
leaves a safety net. Two gaps have none, and this sweep closes them:

- **a doctor held for nothing**: ``busy`` for a call that is over in the database (the process died
  after committing ``completed`` or ``cancelled``, before freeing the doctor), or for a call no longer
  theirs; ``offered`` for an offer already decided (accepted: the doctor becomes ``busy`` with the
  call they hold; else freed), or for an offer that was never committed and has no entry left. A freed
  doctor goes back to the availability they last chose (``doctor_profiles.chosen_status``) and is told
  on ``doctor:<id>`` (``doctor.status``). Where the engine is written *before* the database (a
  reservation before its offer row, a dispatcher's assignment before its commit), a state younger than
  :data:`GRACE_S` is left alone: its commit may be in flight. A call over (completed, cancelled) can
  never be taken again, so a doctor busy for one is freed at once;
- **a doctor on a call, not ``busy``** (their app re-announced ``available`` before the engine was
  rebuilt): made ``busy`` with the call again, after reading the call once more;
- **a lost deadline**: a call still to dispatch without its step entry, a pending offer without its
  expiry, an unacknowledged SOS without its repeat (the services' own ``resume``).

Every change is a compare-and-set on the exact state read (version included), so a sweep racing the
offer loop changes nothing the loop changed first. Each repair is counted by kind (``totals``, read
by the server's metrics) and logged with the call or offer id, never a name or a position.

One process at a time: the sweep is the Deadlines entry ``repair:sweep`` on the offer loop's queue;
whoever claims it sweeps and schedules the next one ``interval_s`` later (which voids the claim); a
process that dies sweeping leaves its entry to come back after the lease. Every process makes sure the
entry exists (:meth:`RepairSweep.ensure_armed`) at start-up and after the engine changed.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections import Counter
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.deadline_worker import DeadlineWorker
from dispatch.deadlines import Claim, Deadlines
from dispatch.dispatch_context import offer_key
from dispatch.doctor_states import DoctorState, DoctorStates
from dispatch.lifecycle import DOCTOR_ON_CALL
from dispatch.offer_loop import OfferLoop
from dispatch.publisher import EventPublisher
from dispatch.rebuild import SOS, chosen
from dispatch.sos import SosService
from models.enums import CallStatus, DoctorStatus, OfferOutcome
from models.repositories import calls as call_repo
from models.repositories import doctors as doctor_repo
from models.repositories import offers as offer_repo
from models.types import utcnow
from realtime.event_types import EventType

log = logging.getLogger("tot.repair")

REPAIR = "repair"
"""Deadline kind of the sweep: key ``repair:sweep`` on the offer loop's queue."""
SWEEP_KEY = f"{REPAIR}:sweep"
GRACE_S = 30.0
"""Seconds a state written before its database commit (a reservation, a dispatcher's assignment) is
left alone: longer than any commit waits for its pool (``TOT_DB_POOL_TIMEOUT``, 5 s by default)."""
OVER = frozenset({CallStatus.COMPLETED, CallStatus.CANCELLED})
"""Calls that can never be taken again."""

Fix = tuple[DoctorState, str, DoctorStatus | None, str | None]
"""One repair: the state read, its kind, the status to set (None: the doctor's chosen availability),
the ref to set with it."""


def _uuid(text: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(text) if text else None
    except ValueError:
        return None


class RepairSweep:
    """Sweeps the engine against the database (see the module docstring).

    ``sessions``: the database; ``states``: DoctorStates; ``deadlines``: the offer loop's queue (the
    sweep's own entry lives there); ``loop``/``sos``: whose ``resume`` re-arms lost deadlines;
    ``publisher``: tells a freed doctor; ``interval_s``: between two sweeps; ``now``: the clock (aware
    UTC datetimes, as the services')."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        states: DoctorStates,
        deadlines: Deadlines,
        loop: OfferLoop,
        sos: SosService,
        publisher: EventPublisher,
        *,
        interval_s: float = 5.0,
        now: Callable[[], dt.datetime] = utcnow,
        hold_on_call: bool = True,
    ) -> None:
        self.sessions = sessions
        # A switch so that this one repair can be turned off while a kill -9 race failure ("a doctor
        # offered while on a call", issue 16's note) is traced; turning it off did not remove it.
        self.hold_on_call = hold_on_call
        self.states = states
        self.deadlines = deadlines
        self.loop = loop
        self.sos = sos
        self.publisher = publisher
        self.interval_s = interval_s
        self.now = now
        self.totals: Counter[str] = Counter()
        """Repairs since start, by kind (``busy_over``, ``busy_stale``, ``offered_decided``,
        ``offered_accepted``, ``offered_unmade``, ``busy_restored``, ``step``, ``offer``, ``sos``),
        plus ``sweeps``."""

    def now_ms(self) -> int:
        """The clock in epoch milliseconds."""
        return int(self.now().timestamp() * 1000)

    # --- the lease --------------------------------------------------------------------------------

    def attach(self, worker: DeadlineWorker) -> None:
        """Route ``repair:`` entries of ``worker`` (the offer loop's) to :meth:`on_deadline`."""
        worker.route(REPAIR, self.on_deadline)

    async def ensure_armed(self, _epoch: str = "") -> None:
        """Schedule the sweep's entry ``interval_s`` from now unless it exists (every process, at
        start-up and after the engine changed: a local step of ``dispatch/engine_watch.py``)."""
        if await self.deadlines.get(SWEEP_KEY) is None:
            await self.deadlines.schedule(SWEEP_KEY, self.now_ms() + int(self.interval_s * 1000))

    async def on_deadline(self, _ident: str, _claim: Claim) -> None:
        """The entry came due here: sweep, then schedule the next one (also after a failure, logged)."""
        try:
            await self.sweep()
        except Exception:
            log.exception("repair sweep failed; the next one runs on schedule")
        await self.deadlines.schedule(SWEEP_KEY, self.now_ms() + int(self.interval_s * 1000))

    # --- the sweep --------------------------------------------------------------------------------

    async def sweep(self) -> dict[str, int]:
        """One sweep; returns the repairs made, by kind (empty when everything was in line). Raises
        database and engine errors."""
        repairs: Counter[str] = Counter()
        repairs.update(await self._engaged())
        if self.hold_on_call:
            repairs.update(await self._on_calls())
        armed = await self.loop.resume()
        repairs.update({kind: n for kind, n in armed.items() if n})
        if sos_armed := await self.sos.resume():
            repairs[SOS] += sos_armed
            log.warning("repair: SOS repeats re-armed", extra={"kind": SOS, "count": sos_armed})
        for kind in (k for k in armed if armed[k]):
            log.warning("repair: deadlines re-armed", extra={"kind": kind, "count": armed[kind]})
        self.totals.update(repairs)
        self.totals["sweeps"] += 1
        return dict(repairs)

    async def _engaged(self) -> Counter[str]:
        """Doctors ``busy``/``offered`` in the engine for what the database says is over."""
        engaged = await self.states.engaged()  # the engine first: a database read after it is newer
        if not engaged:
            return Counter()
        call_ids = [c for s in engaged if s.status is DoctorStatus.BUSY and (c := _uuid(s.ref))]
        offer_ids = [o for s in engaged if s.status is DoctorStatus.OFFERED and (o := _uuid(s.ref))]
        async with self.sessions() as session:
            offers = await offer_repo.offers_by_id(session, offer_ids)
            calls = await call_repo.call_states(
                session, call_ids + [o.call_id for o in offers.values() if o.outcome == OfferOutcome.ACCEPTED]
            )
        now_ms = self.now_ms()
        fixes: list[Fix] = []
        for state in engaged:
            doctor, ref = _uuid(state.doctor_id), _uuid(state.ref)
            settled = now_ms - state.since_ms >= GRACE_S * 1000  # older than any commit in flight
            if state.status is DoctorStatus.BUSY:
                call = calls.get(ref) if ref else None
                if call is not None and CallStatus(call[0]) in DOCTOR_ON_CALL and call[1] == doctor:
                    continue
                if call is not None and CallStatus(call[0]) in OVER:
                    fixes.append((state, "busy_over", None, None))
                elif settled:
                    fixes.append((state, "busy_stale", None, None))
                continue
            offer = offers.get(ref) if ref else None
            if offer is None:
                # A reservation whose offer was never committed: its own entry frees it, if it has one.
                if settled and (ref is None or await self.deadlines.get(offer_key(ref)) is None):
                    fixes.append((state, "offered_unmade", None, None))
                continue
            if offer.outcome == OfferOutcome.PENDING.value:
                continue
            held = calls.get(offer.call_id)
            if (
                offer.outcome == OfferOutcome.ACCEPTED.value
                and held is not None
                and CallStatus(held[0]) in DOCTOR_ON_CALL
                and held[1] == offer.doctor_id
            ):
                fixes.append((state, "offered_accepted", DoctorStatus.BUSY, str(offer.call_id)))
            else:
                fixes.append((state, "offered_decided", None, None))
        return await self._apply(fixes)

    async def _apply(self, fixes: list[Fix]) -> Counter[str]:
        """Make each fix by compare-and-set on the exact state read; ``to`` None: the doctor's chosen
        availability (told on ``doctor:<id>``)."""
        done: Counter[str] = Counter()
        if not fixes:
            return done
        async with self.sessions() as session:
            profiles = await doctor_repo.profiles_by_user(
                session, [d for s, _, to, _ in fixes if to is None and (d := _uuid(s.doctor_id))]
            )
        for state, kind, to, ref in fixes:
            doctor = _uuid(state.doctor_id)
            target = to if to is not None else chosen(profiles.get(doctor) if doctor else None)
            result = await self.states.compare_and_set(
                state.doctor_id,
                expected=state.status,
                expected_ref=state.ref,
                expected_version=state.version,
                new=target,
                ref=ref,
            )
            if not result.ok:
                continue  # the offer loop moved the doctor meanwhile: nothing left to repair
            done[kind] += 1
            log.warning("repair: doctor state", extra={"kind": kind, "ref": state.ref, "to": target.value})
            if to is None:
                # The doctor is told through the outbox like every other doctor.status (a transaction
                # of its own: the repair changed the live engine only).
                async with self.publisher.transaction() as tx:
                    tx.doctor(
                        state.doctor_id,
                        EventType.DOCTOR_STATUS,
                        {
                            "status": target.value,
                            "version": result.state.version,
                            "since": result.state.since_ms,
                        },
                    )
        return done

    async def _on_calls(self) -> Counter[str]:
        """Doctors on an open call in the database whom the engine does not hold ``busy``."""
        statuses = [s.value for s in DOCTOR_ON_CALL]
        async with self.sessions() as session:
            pairs = await call_repo.doctors_on_calls(session, statuses)
        if not pairs:
            return Counter()
        states = await self.states.get_many([str(d) for d, _ in pairs])
        loose = [(d, c) for d, c in pairs if states[str(d)].status is not DoctorStatus.BUSY]
        if not loose:
            return Counter()
        async with self.sessions() as session:  # read again: the call may have ended meanwhile
            calls = await call_repo.call_states(session, [c for _, c in loose])
        fixes: list[Fix] = []
        for doctor, call_id in loose:
            call = calls.get(call_id)
            if call is not None and CallStatus(call[0]) in DOCTOR_ON_CALL and call[1] == doctor:
                fixes.append((states[str(doctor)], "busy_restored", DoctorStatus.BUSY, str(call_id)))
        return await self._apply(fixes)
