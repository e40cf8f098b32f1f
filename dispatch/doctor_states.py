"""DoctorStates: each doctor's availability, changed only by an atomic compare-and-set.

The contract (both implementations, ``doctor_states_memory`` and ``doctor_states_redis``, pass one test
suite, ``tests/contract/test_doctor_states.py``):

- A doctor is in exactly one :class:`DoctorStatus`. A doctor the engine has never seen is ``OFFLINE``
  at version 0 (``get`` never returns ``None``).
- :meth:`DoctorStates.compare_and_set` is the only way to change it. It is linearizable: of any number
  of concurrent calls from any number of processes expecting the same version of a state, at most one
  succeeds. Two processes can therefore never both reserve (offer to) the same doctor.
- A doctor holds at most one offer: ``OFFERED`` can be entered only from ``AVAILABLE`` (enforced: a CAS
  to ``OFFERED`` whose ``expected`` admits any other status raises ``ValueError``), and the state holds
  one ``ref`` (the offer id while ``OFFERED``, the call id while ``BUSY``).
- Every successful CAS sets ``since_ms`` to the engine clock (epoch milliseconds) and increments
  ``version`` by one, even when the status does not change (a re-reservation is a new version).
- The change reaches the LocationIndex atomically: in the same Lua script on Redis (the doctor's
  availability sets per H3 cell live in the same Cluster slot), under the same event-loop step in memory.
  A doctor is searchable by ``nearest_available`` exactly while ``AVAILABLE`` (and fresh, see
  ``geo/location_index.py``). There is no window where the index and the state disagree.
- Doctor records carry no TTL: there is one per doctor on the roster, not per event, and a doctor's
  status must survive a silent phone (``BUSY`` on a two-hour visit). Going offline is the server's call
  (Presence), a CAS to ``OFFLINE``; a vanished doctor drops out of search through position freshness.
- Single-node limits: all doctor records of one deployment live in one Redis Cluster slot (see
  ``realtime/keys.py``), as one process's memory in the embedded engine; not thread-safe (one event loop).

Rebuilding (``dispatch/rebuild.py``): when the engine is lost whole (a Redis restarted empty), the
states the database implies are written back with :meth:`DoctorStates.restore`, which writes only
doctors the engine has no state of, so it never undoes a change made since the engine came back. The
repair sweep (``dispatch/repair_sweep.py``) reads the doctors in ``OFFERED``/``BUSY`` with
:meth:`DoctorStates.engaged` and frees those the database says are done.

Status meanings: ``OFFLINE`` not on shift; ``AVAILABLE`` on shift, free for offers; ``OFFERED`` holding
one offer (ref = offer id) until accept, decline or expiry; ``BUSY`` on a call (ref = call id);
``PAUSED`` on shift, not taking offers (break, paperwork).
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from models.enums import DoctorStatus
from realtime.keys import check_doctor_id

REF_REQUIRED: frozenset[DoctorStatus] = frozenset({DoctorStatus.OFFERED, DoctorStatus.BUSY})
"""Statuses that must name what they are about (``ref``): the offer, the call."""

MAX_REF_LEN = 128
"""Longest ``ref`` accepted (offer and call ids are UUIDs or shorter)."""


@dataclass(frozen=True, slots=True)
class DoctorState:
    """One doctor's state.

    ``status``: the availability; ``ref``: what it is about (offer id while ``OFFERED``, call id while
    ``BUSY``, optional otherwise, ``None`` when not set); ``since_ms``: engine time (epoch ms) of the last
    successful compare-and-set, 0 if none; ``version``: number of successful compare-and-sets, 0 if none.
    """

    doctor_id: str
    status: DoctorStatus
    ref: str | None
    since_ms: int
    version: int


@dataclass(frozen=True, slots=True)
class CasResult:
    """Outcome of :meth:`DoctorStates.compare_and_set`.

    ``ok``: whether the change was made. ``state``: the doctor's state after the call, i.e. the new state
    when ``ok``, else the current state that failed the comparison (so the caller needs no second read).
    """

    ok: bool
    state: DoctorState


ENGAGED: frozenset[DoctorStatus] = frozenset({DoctorStatus.OFFERED, DoctorStatus.BUSY})
"""Statuses held for the dispatch loop (an offer, a call): what :meth:`DoctorStates.engaged` lists."""


@dataclass(frozen=True, slots=True)
class Restore:
    """One doctor's state as the database implies it, for :meth:`DoctorStates.restore`: ``BUSY`` with
    ``ref`` = the open call's id, ``OFFERED`` with ``ref`` = the pending offer's id, else the status
    the doctor last chose (``ref`` None)."""

    doctor_id: str
    status: DoctorStatus
    ref: str | None = None


def check_restore(entries: Sequence[Restore]) -> None:
    """Validate every entry of a :meth:`DoctorStates.restore` before any is written; raises
    ``ValueError`` for an invalid id, an unknown status, a missing or too long ``ref`` for
    ``OFFERED``/``BUSY``, or a doctor named twice."""
    seen: set[str] = set()
    for entry in entries:
        check_doctor_id(entry.doctor_id)
        status = DoctorStatus(entry.status)
        if status in REF_REQUIRED and entry.ref is None:
            raise ValueError(f"status {status.value!r} needs a ref (the offer or call id)")
        if entry.ref is not None and (
            not isinstance(entry.ref, str) or not 0 < len(entry.ref) <= MAX_REF_LEN
        ):
            raise ValueError(f"ref must be a non-empty string of at most {MAX_REF_LEN} characters")
        if entry.doctor_id in seen:
            raise ValueError(f"doctor {entry.doctor_id!r} is restored twice")
        seen.add(entry.doctor_id)


def normalize_expected(expected: DoctorStatus | Collection[DoctorStatus]) -> frozenset[DoctorStatus]:
    """``expected`` as a non-empty set of :class:`DoctorStatus`; raises ``ValueError`` otherwise."""
    items = [expected] if isinstance(expected, str) else list(expected)
    try:
        result = frozenset(DoctorStatus(item) for item in items)
    except ValueError as exc:
        raise ValueError(f"unknown doctor status in {expected!r}") from exc
    if not result:
        raise ValueError("expected must name at least one status")
    return result


def check_cas(
    doctor_id: str,
    expected: frozenset[DoctorStatus],
    new: DoctorStatus,
    ref: str | None,
    expected_ref: str | None,
    expected_version: int | None,
) -> None:
    """Validate compare-and-set arguments (shared by both implementations); raises ``ValueError``."""
    check_doctor_id(doctor_id)
    if new == DoctorStatus.OFFERED and expected != {DoctorStatus.AVAILABLE}:
        raise ValueError("a doctor can be offered a call only from 'available' (one offer at a time)")
    if new in REF_REQUIRED and ref is None:
        raise ValueError(f"status {new.value!r} needs a ref (the offer or call id)")
    for name, value in (("ref", ref), ("expected_ref", expected_ref)):
        if value is not None and (not isinstance(value, str) or not 0 < len(value) <= MAX_REF_LEN):
            raise ValueError(f"{name} must be a non-empty string of at most {MAX_REF_LEN} characters")
    if expected_version is not None and (isinstance(expected_version, bool) or expected_version < 0):
        raise ValueError("expected_version must be a non-negative int")


class DoctorStates(abc.ABC):
    """Doctor availability with atomic compare-and-set (see the module docstring for the contract).

    Implementations: ``MemoryDoctorStates(clock=..., index=...)`` and
    ``RedisDoctorStates(redis, keys, clock=...)``. All methods are coroutines.
    """

    @abc.abstractmethod
    async def get(self, doctor_id: str) -> DoctorState:
        """The doctor's current state; ``OFFLINE``, ``ref=None``, ``since_ms=0``, ``version=0`` for a
        doctor never seen. Raises ``ValueError`` for an invalid id."""

    async def get_many(self, doctor_ids: Collection[str]) -> dict[str, DoctorState]:
        """:meth:`get` for each of ``doctor_ids`` (one round trip on Redis), by doctor id. Raises
        ``ValueError`` for an invalid id."""
        return {doctor_id: await self.get(doctor_id) for doctor_id in doctor_ids}

    @abc.abstractmethod
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
        """Atomically set the doctor's status to ``new`` (with ``ref``) if the current state matches.

        Matches when the current status is in ``expected`` and, when given, the current ``ref`` equals
        ``expected_ref`` and the current ``version`` equals ``expected_version``. On a match: status,
        ref (``None`` clears it), ``since_ms = clock()``, ``version + 1`` are written at once and the
        LocationIndex's availability follows in the same atomic step. Typical uses::

            offer:   expected=AVAILABLE, new=OFFERED, ref=offer_id
            accept:  expected=OFFERED, expected_ref=offer_id, new=BUSY, ref=call_id
            expire:  expected=OFFERED, expected_ref=offer_id, new=AVAILABLE

        Raises ``ValueError`` for an invalid id, an unknown status, ``new=OFFERED`` with ``expected``
        other than exactly ``{AVAILABLE}``, a missing ``ref`` for ``OFFERED``/``BUSY``, or a ref longer
        than :data:`MAX_REF_LEN`.
        """

    @abc.abstractmethod
    async def restore(self, entries: Sequence[Restore]) -> list[str]:
        """Write each entry's state for a doctor the engine holds no state of (version 0: never set
        since the engine's life began) and leave every other doctor alone: a change made since the
        engine came back (a doctor re-announcing, an offer of the new life) is newer than the
        database's view. A written state has ``since_ms = clock()``, version 1, and reaches the
        LocationIndex's availability in the same atomic step, as a compare-and-set would; ``OFFERED``
        may be written from nothing (the offer was made in the engine's former life).

        Returns the ids written, in ``entries`` order. Raises ``ValueError`` (:func:`check_restore`)
        before writing anything. Redis: one script call per :data:`RESTORE_CHUNK` entries, each atomic
        (not the whole call)."""

    @abc.abstractmethod
    async def engaged(self) -> list[DoctorState]:
        """Every doctor whose status is ``OFFERED`` or ``BUSY`` (:data:`ENGAGED`), in no particular
        order: the repair sweep checks each against the database. Redis reads a set the scripts keep
        (``Keys.loc_engaged``), never a scan of the records."""


RESTORE_CHUNK = 500
"""Doctors per restore script call on Redis (bounds how long one call blocks Redis)."""
