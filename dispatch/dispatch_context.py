"""What the parts of the offer loop share: their dependencies, tunables, clock and task tracking.

The offer loop is split by concept (the step, the offer answers, people stepping in, the reservation
helpers); each part takes one :class:`DispatchContext` instead of seven arguments. The keys of the
engine's Deadlines entries are spelt here, in one place.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.calls import CallService
from dispatch.deadline_worker import DeadlineWorker
from dispatch.deadlines import Deadlines
from dispatch.doctor_states import DoctorStates
from dispatch.publisher import EventPublisher
from dispatch.settings import DispatchSettings
from geo.location_index import LocationIndex

STEP = "step"
"""Deadline kind of a call's next step: key ``step:<call id>``."""
OFFER = "offer"
"""Deadline kind of an open (or reserved) offer: key ``offer:<offer id>``, due at its deadline."""


def step_key(call_id: uuid.UUID) -> str:
    """The Deadlines key of the call's next step."""
    return f"{STEP}:{call_id}"


def offer_key(offer_id: uuid.UUID) -> str:
    """The Deadlines key of an offer (or of a reservation that is to become one)."""
    return f"{OFFER}:{offer_id}"


def reservation(call_id: uuid.UUID, doctor_id: str) -> bytes:
    """The payload of an offer's Deadlines entry: whom it reserved, for which call.
    Shape: ``b"<call id>/<doctor id>"``."""
    return f"{call_id}/{doctor_id}".encode()


async def _nothing() -> None:
    """No engine to check (a context without an engine watcher: tests, tools)."""


@dataclass(frozen=True, slots=True)
class DispatchContext:
    """The dependencies of the offer loop's parts. ``now``: the clock (aware UTC datetimes);
    ``worker``: the deadline worker, which also tracks the steps started in this process."""

    calls: CallService
    locations: LocationIndex
    states: DoctorStates
    deadlines: Deadlines
    settings: DispatchSettings
    now: Callable[[], dt.datetime]
    worker: DeadlineWorker
    settling: Callable[[], bool] = lambda: False
    """True while the live engine is being rebuilt after a loss and doctors re-announce
    (``EngineWatch.settling``): a search that finds nobody then looks again instead of escalating."""
    check_engine: Callable[[], Awaitable[object]] = _nothing
    """Checks the engine's epoch now (``EngineWatch.check``, rebuilding when it is gone): a search that
    found nobody asks before it escalates, since the periodic check may not have seen a Redis that came
    back empty a moment ago (the test of a Redis restart caught a call created 32 ms after it)."""

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        """The database sessions (those of the call service)."""
        return self.calls.sessions

    @property
    def publisher(self) -> EventPublisher:
        """Where events are published (the call service's publisher, the one door)."""
        return self.calls.publisher

    def now_ms(self) -> int:
        """The clock in epoch milliseconds."""
        return int(self.now().timestamp() * 1000)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task the worker tracks (cancelled when the loop stops)."""
        self.worker.spawn(coro)
