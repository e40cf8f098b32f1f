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

import asyncio
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


_FIELDS = ["st", "ref", "since", "ver"]
GET_MANY = """
-- KEYS: doctor records. Returns per key one string, "st since ver =ref" ("-" for an absent st, since or
-- ver; nothing after the last space without a ref; the ref last, as it may hold spaces): far cheaper
-- for the client to parse than a nested reply.
local out = {}
for i, key in ipairs(KEYS) do
  local f = redis.call('HMGET', key, 'st', 'ref', 'since', 'ver')
  local ref = f[2] and ('=' .. f[2]) or ''
  out[i] = (f[1] or '-') .. ' ' .. (f[3] or '-') .. ' ' .. (f[4] or '-') .. ' ' .. ref
end
return out
"""
GET_MANY_CHUNK = 1_000
"""Doctor records per script call in ``get_many`` (bounds how long one call blocks Redis)."""


def _state(doctor_id: str, fields: list[Any]) -> DoctorState:
    st, ref, since, ver = fields
    return DoctorState(
        doctor_id,
        DoctorStatus(_text(st)) if st is not None else DoctorStatus.OFFLINE,
        _text(ref) if ref is not None else None,
        int(_text(since)) if since is not None else 0,
        int(_text(ver)) if ver is not None else 0,
    )


def _unpack(doctor_id: str, packed: str) -> DoctorState:
    st, since, ver, ref = packed.split(" ", 3)
    return _state(
        doctor_id,
        [
            None if st == "-" else st,
            ref[1:] if ref else None,
            None if since == "-" else since,
            None if ver == "-" else ver,
        ],
    )


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
        self._get_many_script = redis.register_script(GET_MANY)

    async def get(self, doctor_id: str) -> DoctorState:
        """See :meth:`DoctorStates.get`."""
        check_doctor_id(doctor_id)
        fields = await self._redis.hmget(self._keys.loc_doctor(doctor_id), _FIELDS)
        return _state(doctor_id, fields)

    async def get_many(self, doctor_ids: Collection[str]) -> dict[str, DoctorState]:
        """See :meth:`DoctorStates.get_many`: one script call per :data:`GET_MANY_CHUNK` doctors, the
        calls concurrent. Location ingest reads thousands a second: one awaited command each costs
        ~50 µs of client CPU, one pipelined command ~26 µs, one key of this script ~3 µs."""
        ids = [check_doctor_id(doctor_id) for doctor_id in doctor_ids]
        if not ids:
            return {}
        chunks = [ids[i : i + GET_MANY_CHUNK] for i in range(0, len(ids), GET_MANY_CHUNK)]
        replies = await asyncio.gather(
            *(self._get_many_script(keys=[self._keys.loc_doctor(d) for d in chunk]) for chunk in chunks)
        )
        return {
            doctor_id: _unpack(doctor_id, _text(packed))
            for chunk, reply in zip(chunks, replies, strict=True)
            for doctor_id, packed in zip(chunk, reply, strict=True)
        }

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
