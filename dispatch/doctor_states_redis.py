"""The scale-out engine's DoctorStates: one hash per doctor, changed by one Lua compare-and-set.

The record (``Keys.loc_doctor``) lives under the live index's hash tag ``{loc}`` because the same
script that changes the status also adds the doctor to (or removes it from) the availability sets of
the H3 cells it stands in (``geo.location_index_lua.MEMBERSHIP_LUA``): the LocationIndex never shows
an offered or busy doctor as available, and a crash cannot leave the two apart. Redis runs each script
alone, so of any number of concurrent compare-and-sets from any number of processes, exactly the ones
whose expectation still holds when they run succeed; with the same expectation, one.

Contract: ``dispatch/doctor_states.py``.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import redis.asyncio as aioredis

from dispatch.doctor_states import (
    CasResult,
    DoctorState,
    DoctorStates,
    DoctorStatus,
    check_cas,
    check_doctor_id,
    normalize_expected,
)
from geo.location_index_lua import MEMBERSHIP_LUA
from realtime.clock import Clock, wall_clock_ms
from realtime.keys import Keys

COMPARE_AND_SET = (
    MEMBERSHIP_LUA
    + """
-- KEYS: doctor record. ARGV: 1 id, 2 avail prefix, 3 expected statuses (space-separated),
-- 4 expected ref ('' = any, else '=' .. ref), 5 expected version ('' = any), 6 new status,
-- 7 new ref ('' = none), 8 now ms. Returns {ok, status, ref, since, version} (the state after).
local d = redis.call('HMGET', KEYS[1], 'st', 'ref', 'since', 'ver', 'specs', 'cells')
local st, ref, since, ver = d[1] or 'offline', d[2] or '', d[3] or '0', tonumber(d[4] or '0')
local match = false
for e in string.gmatch(ARGV[3], '%S+') do
  if e == st then match = true end
end
if match and ARGV[4] ~= '' and ARGV[4] ~= '=' .. ref then match = false end
if match and ARGV[5] ~= '' and tonumber(ARGV[5]) ~= ver then match = false end
if not match then return {0, st, ref, since, tostring(ver)} end
local new, nref, now = ARGV[6], ARGV[7], ARGV[8]
ver = ver + 1
redis.call('HSET', KEYS[1], 'st', new, 'since', now, 'ver', tostring(ver))
if nref == '' then redis.call('HDEL', KEYS[1], 'ref') else redis.call('HSET', KEYS[1], 'ref', nref) end
if (st == 'available') ~= (new == 'available') then
  membership(new == 'available' and 'SADD' or 'SREM', ARGV[1], ARGV[2], d[6], d[5])
end
return {1, new, nref, now, tostring(ver)}
"""
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)


class RedisDoctorStates(DoctorStates):
    """Redis :class:`~dispatch.doctor_states.DoctorStates`.

    ``redis``: a ``redis.asyncio.Redis`` (bytes or decoded responses); ``keys``: the deployment's key
    factory (the same as the LocationIndex's, so availability reaches it); ``clock``: engine time in
    epoch ms for ``since_ms`` (default wall clock).
    """

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, clock: Clock | None = None) -> None:
        self._redis = redis
        self._keys = keys
        self._clock: Clock = clock or wall_clock_ms
        self._avail_prefix = keys.loc_available_prefix()
        self._cas_script = redis.register_script(COMPARE_AND_SET)

    async def get(self, doctor_id: str) -> DoctorState:
        """See :meth:`DoctorStates.get`."""
        check_doctor_id(doctor_id)
        st, ref, since, ver = await self._redis.hmget(
            self._keys.loc_doctor(doctor_id), ["st", "ref", "since", "ver"]
        )
        return DoctorState(
            doctor_id,
            DoctorStatus(_text(st)) if st is not None else DoctorStatus.OFFLINE,
            _text(ref) if ref is not None else None,
            int(_text(since)) if since is not None else 0,
            int(_text(ver)) if ver is not None else 0,
        )

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
        """See :meth:`DoctorStates.compare_and_set`. One script call."""
        wanted = normalize_expected(expected)
        new = DoctorStatus(new)
        check_cas(doctor_id, wanted, new, ref, expected_ref, expected_version)
        args = [
            doctor_id,
            self._avail_prefix,
            " ".join(sorted(s.value for s in wanted)),
            "" if expected_ref is None else "=" + expected_ref,
            "" if expected_version is None else str(expected_version),
            new.value,
            ref or "",
            str(self._clock()),
        ]
        ok, st, cur_ref, since, ver = await self._cas_script(
            keys=[self._keys.loc_doctor(doctor_id)], args=args
        )
        ref_text = _text(cur_ref)
        state = DoctorState(
            doctor_id, DoctorStatus(_text(st)), ref_text or None, int(_text(since)), int(_text(ver))
        )
        return CasResult(int(ok) == 1, state)
