"""The embedded engine's DoctorStates: a dictionary of frozen states in this process.

Atomicity comes from the event loop: ``compare_and_set`` reads, compares, writes and tells the
LocationIndex without awaiting in between, so no other coroutine can interleave. Same contract as the
Redis implementation (``dispatch/doctor_states.py``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from dispatch.doctor_states import (
    ENGAGED,
    CasResult,
    DoctorState,
    DoctorStates,
    Restore,
    check_cas,
    check_restore,
    normalize_expected,
)
from geo.location_index_memory import MemoryLocationIndex
from models.enums import DoctorStatus
from realtime.clock import Clock, wall_clock_ms
from realtime.keys import check_doctor_id


class MemoryDoctorStates(DoctorStates):
    """In-process :class:`~dispatch.doctor_states.DoctorStates`.

    ``clock``: engine time in epoch ms (default wall clock). ``index``: the memory LocationIndex whose
    availability sets follow every change (the embedded engine passes its index; ``None`` only for a
    states-only use such as a unit test).
    """

    def __init__(self, *, clock: Clock | None = None, index: MemoryLocationIndex | None = None) -> None:
        self._clock: Clock = clock or wall_clock_ms
        self._index = index
        self._states: dict[str, DoctorState] = {}

    def _current(self, doctor_id: str) -> DoctorState:
        state = self._states.get(doctor_id)
        return state if state is not None else DoctorState(doctor_id, DoctorStatus.OFFLINE, None, 0, 0)

    async def get(self, doctor_id: str) -> DoctorState:
        """See :meth:`DoctorStates.get`."""
        return self._current(check_doctor_id(doctor_id))

    async def compare_and_set(
        self,
        doctor_id: str,
        *,
        expected: DoctorStatus | Collection[DoctorStatus],
        new: DoctorStatus,
        ref: str | None = None,
        expected_ref: str | None = None,
        expected_version: int | None = None,
    ) -> CasResult:
        """See :meth:`DoctorStates.compare_and_set`."""
        wanted = normalize_expected(expected)
        new = DoctorStatus(new)
        check_cas(doctor_id, wanted, new, ref, expected_ref, expected_version)
        current = self._current(doctor_id)
        if (
            current.status not in wanted
            or (expected_ref is not None and current.ref != expected_ref)
            or (expected_version is not None and current.version != expected_version)
        ):
            return CasResult(False, current)
        state = DoctorState(doctor_id, new, ref, self._clock(), current.version + 1)
        self._states[doctor_id] = state
        if self._index is not None:
            self._index.apply_status(doctor_id, new)
        return CasResult(True, state)

    async def restore(self, entries: Sequence[Restore]) -> list[str]:
        """See :meth:`DoctorStates.restore` (no await between the checks and the writes: atomic)."""
        check_restore(entries)
        written: list[str] = []
        now = self._clock()
        for entry in entries:
            if entry.doctor_id in self._states:
                continue
            status = DoctorStatus(entry.status)
            self._states[entry.doctor_id] = DoctorState(entry.doctor_id, status, entry.ref, now, 1)
            if self._index is not None:
                self._index.apply_status(entry.doctor_id, status)
            written.append(entry.doctor_id)
        return written

    async def engaged(self) -> list[DoctorState]:
        """See :meth:`DoctorStates.engaged` (a pass over this process's states)."""
        return [state for state in self._states.values() if state.status in ENGAGED]
