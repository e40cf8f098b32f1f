"""A small world for the dispatch core in-process: the embedded stack (the memory engine and SQLite on
the loop, built as ``server/app.py`` builds them) with one :class:`~tests.clock.ManualClock` shared by
the engine roles and the services.

A test seeds people (:meth:`World.doctor`, :meth:`World.patient`), places doctors, creates calls
(:meth:`World.new_call`), drives them through the public methods of ``OfferLoop``, ``SosService`` and
``CallService`` (``world.loop``, ``world.sos``, ``world.calls``), moves time (:meth:`World.advance_s`,
which runs the deadlines that came due) and reads the outcome: rows (:meth:`World.call`,
:meth:`World.offers`, :meth:`World.transitions`), doctors' states and published events
(:meth:`World.events`). Nothing sleeps on wall time: deadlines fire when the clock says so, and
:meth:`World.settle` awaits the steps the services started in the background.

Reaching into the worker. The dispatch core runs its deadlines in worker loops
(:class:`~dispatch.deadline_worker.DeadlineWorker`: ``OfferLoop.worker`` for ``step:``/``offer:``
entries, ``SosService.worker`` for ``sos:`` repeats) and its steps as tasks of the offer loop's worker.
A test runs due deadlines once instead of a polling ``run``, waits for the steps, and loses a step on
purpose. Those reaches are the module-level functions at the top: :func:`run_due_entries` (claim what
is due on the manual clock, ``DeadlineWorker.handle`` each claim), :func:`wait_idle`
(``DeadlineWorker.wait_idle``), :func:`lose_spawned_steps` (replaces the worker's public ``spawn`` for
a while) and :func:`lose_deadline_entries` (the Deadlines role's public API). All four use public
names only; after a refactoring of the worker only they change.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from dispatch.calls import CallService, NewCall, Who
from dispatch.deadline_worker import DeadlineWorker
from dispatch.doctor_states import DoctorState
from dispatch.offer_loop import OfferLoop
from dispatch.publisher import EventPublisher
from dispatch.settings import DispatchSettings
from dispatch.sos import SosService, SosSettings
from dispatch.zones import ZoneIndex
from geo.location_index import DoctorPosition
from models.calls import Call, CallEvent
from models.db import make_engine, make_sessionmaker
from models.enums import CallStatus, DoctorStatus, OfferOutcome, Role, Urgency
from models.offers import Offer
from models.repositories import calls as call_repo
from models.repositories import doctors as doctor_repo
from models.repositories import offers as offer_repo
from models.repositories import users as user_repo
from realtime.broker import Publication
from realtime.broker_memory import MemoryBroker
from server.engine import LiveEngine, open_engine
from tests.clock import ManualClock

CENTRE = (55.7558, 37.6173)
"""Where calls are by default (Moscow, Red Square)."""
M_PER_DEG_LAT = 111_195.0
SPECIALTY = "therapist"


def offset(north_m: float, east_m: float = 0.0) -> tuple[float, float]:
    """The point ``north_m`` metres north and ``east_m`` east of :data:`CENTRE` (flat approximation)."""
    lat, lon = CENTRE
    return (
        lat + north_m / M_PER_DEG_LAT,
        lon + east_m / (M_PER_DEG_LAT * math.cos(math.radians(lat))),
    )


# --- the reaches into the workers (the only place that knows how deadlines and steps run) ---------


async def run_due_entries(worker: DeadlineWorker, now_ms: int) -> int:
    """Claim the entries of ``worker``'s queue due at ``now_ms`` (batches of its ``pacing.limit``)
    and handle each to its end, in order, with ``DeadlineWorker.handle`` (route by kind, then
    complete): one turn of ``DeadlineWorker.run`` without its sleep and without spawning a task per
    claim, so a test sees every handler finish. Returns how many ran."""
    ran = 0
    while claims := await worker.deadlines.claim_due(now_ms, limit=worker.pacing.limit):
        for claim in claims:
            await worker.handle(claim)
        ran += len(claims)
    return ran


async def wait_idle(*workers: DeadlineWorker) -> None:
    """Wait until none of ``workers`` has a tracked task running: every step started in the
    background has finished, including the steps it started (``DeadlineWorker.wait_idle``). A step
    that kept starting steps would hang here; pytest-timeout (pyproject.toml) fails the test then."""
    for worker in workers:
        await worker.wait_idle()


@contextlib.contextmanager
def lose_spawned_steps(loop: OfferLoop) -> Iterator[list[str]]:
    """While inside, a step the offer loop starts in the background never runs: the process that
    committed the change "dies" before its in-process step, leaving only the step's safety-net entry.
    Yields the names of the lost coroutines.

    The seam is ``DeadlineWorker.spawn`` (public): the offer loop's parts start every background step
    through it (``DispatchContext.spawn``). It is replaced on the worker instance only, by
    ``mock.patch.object``, which puts the method back on leaving. ``DeadlineWorker.run`` spawns its
    claims there too, but the world never calls ``run`` (:func:`run_due_entries` handles claims in
    turn), so only steps are lost."""
    lost: list[str] = []

    def drop(coro: Coroutine[Any, Any, None]) -> None:
        lost.append(getattr(coro, "__qualname__", repr(coro)))
        coro.close()

    with mock.patch.object(loop.worker, "spawn", drop):
        yield lost


async def lose_deadline_entries(world: World) -> list[str]:
    """Every entry of both deadline queues (:attr:`World.workers`) is gone, as when a memory engine's
    process restarts (only the database survives). Uses the Deadlines role's public API; returns the
    keys lost."""
    lost: list[str] = []
    for worker in world.workers:
        deadlines = worker.deadlines
        for claim in await deadlines.claim_due(worker.now_ms() + 10**12, limit=10_000):
            await deadlines.cancel(claim.key)
            lost.append(claim.key)
    return lost


# --- the world ------------------------------------------------------------------------------------


@dataclass
class World:
    """The dispatch core of one process on one fresh database; see the module docstring."""

    clock: ManualClock
    db: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    engine: LiveEngine
    calls: CallService
    loop: OfferLoop
    sos: SosService
    dispatcher: Who
    published: list[Publication] = field(default_factory=list)
    _recorder: asyncio.Task[None] | None = None
    _seq: int = 0

    @property
    def workers(self) -> tuple[DeadlineWorker, DeadlineWorker]:
        """The deadline workers of the process: the offer loop's, then SOS's."""
        return (self.loop.worker, self.sos.worker)

    @property
    def broker(self) -> MemoryBroker:
        broker = self.engine.broker
        assert isinstance(broker, MemoryBroker)
        return broker

    # --- people ---------------------------------------------------------------------------------

    async def _user(self, role: Role, *, specialties: tuple[str, ...] = (), verified: bool = True) -> Who:
        self._seq += 1
        async with self.sessions.begin() as session:
            user = await user_repo.create_user(
                session,
                email=f"{role.value}{self._seq}@world.test",
                phone=None,
                password_hash="not-a-hash",  # nobody logs in here
                full_name=f"{role.value.title()} {self._seq}",
                role=role,
            )
            if role is Role.DOCTOR:
                profile = await doctor_repo.create_profile(
                    session,
                    user_id=user.id,
                    licence_number=f"LIC-{self._seq:06d}",
                    specialties=specialties,
                    clinic_id=None,
                )
                if verified:
                    await doctor_repo.set_verified(session, profile, True, user.id)
        who = Who(user.id, role)
        if role is Role.DOCTOR:
            await self.listen(f"doctor:{user.id}")
        return who

    async def patient(self) -> Who:
        """A new patient."""
        return await self._user(Role.PATIENT)

    async def doctor(
        self,
        north_m: float | None = 0.0,
        east_m: float = 0.0,
        *,
        available: bool = True,
        specialties: tuple[str, ...] = (SPECIALTY,),
        verified: bool = True,
    ) -> Who:
        """A new doctor, placed ``north_m``/``east_m`` from the centre (None: no position) and made
        available as the app does (``doctor.status``), unless told otherwise. Their channel is
        recorded."""
        who = await self._user(Role.DOCTOR, specialties=specialties, verified=verified)
        await self.engine.locations.set_specialties(str(who.user_id), specialties)
        if north_m is not None:
            await self.place(who, north_m, east_m)
        if available:
            await self.set_status(who, DoctorStatus.AVAILABLE)
        return who

    async def place(self, doctor: Who, north_m: float, east_m: float = 0.0) -> None:
        """A position fix of ``doctor`` taken now."""
        lat, lon = offset(north_m, east_m)
        await self.engine.locations.upsert(DoctorPosition(str(doctor.user_id), lat, lon, 5.0, self.clock()))

    async def set_status(self, doctor: Who, status: DoctorStatus) -> None:
        """The doctor's own availability switch (from any of available, paused, offline)."""
        switchable = {DoctorStatus.AVAILABLE, DoctorStatus.PAUSED, DoctorStatus.OFFLINE}
        result = await self.engine.states.compare_and_set(
            str(doctor.user_id), expected=switchable, new=status
        )
        assert result.ok, f"{doctor.user_id} is {result.state.status}"

    async def state(self, doctor: Who) -> DoctorState:
        """The doctor's state in the engine."""
        return await self.engine.states.get(str(doctor.user_id))

    async def status(self, doctor: Who) -> DoctorStatus:
        """The doctor's status in the engine."""
        return (await self.state(doctor)).status

    # --- calls ----------------------------------------------------------------------------------

    async def new_call(
        self,
        patient: Who,
        *,
        urgency: Urgency = Urgency.URGENT,
        north_m: float = 0.0,
        east_m: float = 0.0,
        start: bool = True,
        **fields: Any,
    ) -> uuid.UUID:
        """A patient's new call, as ``POST /v1/calls`` makes it: created, then its dispatch started
        (``start``) and settled. Its channel is recorded."""
        lat, lon = offset(north_m, east_m)
        new = NewCall(
            address="1 Test Street", lat=lat, lon=lon, urgency=urgency, specialty=SPECIALTY, **fields
        )
        call, created = await self.calls.create(patient, new, idempotency_key=None)
        assert created
        await self.listen(f"call:{call.id}")
        if start:
            await self.loop.start(call)
            await self.settle()
        return call.id

    async def call(self, call_id: uuid.UUID) -> Call:
        """The call's row as committed."""
        async with self.sessions() as session:
            call = await call_repo.get_call(session, call_id)
        assert call is not None
        return call

    async def call_status(self, call_id: uuid.UUID) -> CallStatus:
        return CallStatus((await self.call(call_id)).status)

    async def offers(self, call_id: uuid.UUID) -> list[Offer]:
        """The call's offers, oldest first."""
        async with self.sessions() as session:
            return await offer_repo.offers_of_call(session, call_id)

    async def pending_offer(self, call_id: uuid.UUID, doctor: Who) -> Offer:
        """The one pending offer of the call to ``doctor`` (fails the test when there is none)."""
        async with self.sessions() as session:
            pending = await offer_repo.pending_offers(session, call_id)
        mine = [o for o in pending if o.doctor_id == doctor.user_id]
        assert len(mine) == 1, f"pending offers: {[(str(o.doctor_id), o.outcome) for o in pending]}"
        return mine[0]

    async def the_pending_offer(self, call_id: uuid.UUID) -> tuple[Who, Offer]:
        """The call's one pending offer and its doctor (fails the test unless there is exactly one)."""
        async with self.sessions() as session:
            pending = await offer_repo.pending_offers(session, call_id)
        assert len(pending) == 1, f"{len(pending)} pending offers"
        return Who(pending[0].doctor_id, Role.DOCTOR), pending[0]

    async def outcomes(self, call_id: uuid.UUID) -> list[OfferOutcome]:
        """The outcomes of the call's offers, sorted (offers made in one instant have no order)."""
        return sorted(OfferOutcome(o.outcome) for o in await self.offers(call_id))

    async def history(self, call_id: uuid.UUID) -> list[CallEvent]:
        """The call's event rows (their order among rows of one instant is not defined)."""
        async with self.sessions() as session:
            return await call_repo.list_events(session, call_id)

    async def transitions(self, call_id: uuid.UUID) -> set[tuple[CallStatus | None, CallStatus]]:
        """The ``(from, to)`` status changes recorded for the call (creation is ``(None, created)``)."""
        return {
            (None if e.from_status is None else CallStatus(e.from_status), CallStatus(e.to_status))
            for e in await self.history(call_id)
        }

    # --- time and background work ---------------------------------------------------------------

    async def settle(self) -> None:
        """Wait until the steps started in the background have finished (including the steps they
        start) and every publication has reached :attr:`published`."""
        await wait_idle(*self.workers)
        await self._drain()

    async def run_due(self) -> int:
        """Run every deadline due now (offer loop and SOS) and settle; returns how many ran."""
        ran = 0
        while True:  # a handled entry can schedule another one due now (a step re-armed at once)
            count = 0
            for worker in self.workers:
                count += await run_due_entries(worker, self.clock())
            await self.settle()
            if not count:
                return ran
            ran += count

    async def advance_s(self, seconds: float) -> int:
        """Let ``seconds`` pass, then run what came due; returns how many deadline entries ran."""
        self.clock.advance_s(seconds)
        return await self.run_due()

    # --- events ---------------------------------------------------------------------------------

    async def listen(self, channel: str) -> None:
        """Record ``channel``'s publications from now on (as a subscribed socket would get them)."""
        await self.broker.subscribe(channel)
        if self._recorder is None:
            self._recorder = asyncio.create_task(self._record())

    async def _record(self) -> None:
        while True:
            delivery = await self.broker.receive()
            assert isinstance(delivery, Publication), f"the recorder fell behind: {delivery}"
            self.published.append(delivery)

    async def _drain(self) -> None:
        # The memory broker queues synchronously and the recorder takes everything queued in one run,
        # so two turns of the loop are enough; a few more cost nothing.
        for _ in range(5):
            await asyncio.sleep(0)

    def events(self, channel: str, event_type: str | None = None) -> list[dict[str, Any]]:
        """The data of the events published on ``channel`` (of ``event_type``), oldest first."""
        return [
            p.decode()["data"]
            for p in self.published
            if p.channel == channel and (event_type is None or p.type == event_type)
        ]

    def types(self, channel: str) -> list[str]:
        """The types of the events published on ``channel``, oldest first."""
        return [p.type for p in self.published if p.channel == channel]

    async def close(self) -> None:
        if self._recorder is not None:
            self._recorder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recorder
        await self.loop.stop()
        await self.sos.worker.stop()
        await self.calls.publisher.aclose()
        await self.engine.close()
        await self.db.dispose()


@contextlib.asynccontextmanager
async def open_world(
    database_url: str,
    *,
    settings: DispatchSettings | None = None,
    sos_settings: SosSettings | None = None,
    clock: ManualClock | None = None,
    engine: LiveEngine | None = None,
    seq_start: int = 0,
) -> AsyncIterator[World]:
    """The dispatch core on ``database_url`` (a migrated SQLite file) and a new memory engine (or
    ``engine``, built on ``clock``, whose broker must be a memory one), wired as ``server/app.py``
    wires them, every part on one manual clock. ``seq_start``: where the numbering of seeded people
    starts (a second world on the same database file needs other e-mails and licences)."""
    clock = clock or ManualClock()
    db = make_engine(database_url)
    sessions = make_sessionmaker(db)
    engine = engine or open_engine("memory://", clock=clock)
    zones = ZoneIndex(sessions)
    await zones.reload()
    # The one door, its outbox on the world's database and clock (as server/app.py builds it).
    publisher = EventPublisher(engine.broker, sessions, clock=clock)
    calls = CallService(sessions, publisher, zones, now=clock.utcnow)
    loop = OfferLoop(
        calls,
        engine.locations,
        engine.states,
        engine.deadlines,
        settings or DispatchSettings(),
        now=clock.utcnow,
    )
    sos = SosService(
        sessions,
        publisher,
        engine.locations,
        engine.sos_deadlines,
        calls,
        sos_settings or SosSettings(),
        on_emergency=loop.trigger,
        now=clock.utcnow,
    )
    world = World(clock, db, sessions, engine, calls, loop, sos, Who(uuid.uuid4(), Role.DISPATCHER))
    world._seq = seq_start
    try:
        world.dispatcher = await world._user(Role.DISPATCHER)
        await world.listen("dispatch")
        await world.listen("sos")
        yield world
    finally:
        await world.close()
