"""Lua scripts of the Redis LocationIndex (and the availability helper DoctorStates shares).

Every script runs atomically on the one Cluster slot of the live index (hash tag ``{loc}``, see
``realtime/keys.py``). Key names that depend on a doctor or a cell are built inside Lua as
``<prefix from realtime.keys> .. <id>``; every such key carries the same hash tag as the declared
``KEYS[1]``, which is what routes the script to the right node in a Cluster.

Value formats (also documented in ``realtime/keys.py``):

- position string: ``"<ts_ms> <lat> <lon> <accuracy_m> <heading|-> <speed|-> <cell> <cell>"``: the cells
  are the 15-hex-digit H3 cells at ``geo.cells.INDEX_RESOLUTIONS``, fine first. All cell strings have
  the same length, so "same cells" is a suffix comparison.
- doctor record hash: ``st``, ``ref``, ``since``, ``ver`` (DoctorStates), ``specs`` (space-separated),
  ``cells`` (space-separated; the cells whose availability sets hold the doctor while ``st`` is
  ``available``; set by upserts, cleared by remove and sweep).

Invariant kept by every script: doctor ``d`` is in ``av:<c>:*`` and ``av:<c>:<s>`` for each ``c`` in
``cells`` and ``s`` in ``specs`` if and only if ``st == "available"``.

The haversine in :data:`NEAREST` is ``geo.distance.haversine_m`` operation for operation (same radius,
same degree factor, same evaluation order), so both engines compute bit-identical distances.
"""

from __future__ import annotations

from geo.distance import EARTH_RADIUS_M

MEMBERSHIP_LUA = """
local function membership(op, id, avp, cells, specs)
  if not cells or cells == '' then return end
  for cell in string.gmatch(cells, '%S+') do
    local base = avp .. cell .. ':'
    redis.call(op, base .. '*', id)
    if specs then
      for sp in string.gmatch(specs, '%S+') do redis.call(op, base .. sp, id) end
    end
  end
end
"""
"""Defines ``membership(op, id, avp, cells, specs)``: ``op`` (``SADD``/``SREM``) ``id`` on the "any"
set and every specialty set of every cell in the space-separated ``cells``. Prepended to scripts."""

_MOVE_LUA = """
local function move(id, avp, old, new, specs)
  local o, n = {}, {}
  if old then for c in string.gmatch(old, '%S+') do o[#o + 1] = c end end
  for c in string.gmatch(new, '%S+') do n[#n + 1] = c end
  for i = 1, math.max(#o, #n) do
    if o[i] ~= n[i] then
      if o[i] then membership('SREM', id, avp, o[i], specs) end
      if n[i] then membership('SADD', id, avp, n[i], specs) end
    end
  end
end
"""

UPSERT_MANY = (
    MEMBERSHIP_LUA
    + _MOVE_LUA
    + """
-- KEYS: geo, seen. ARGV: pos prefix, doc prefix, avail prefix, ttl ms, now ms, length of the cells
-- suffix of a position string, then per position: id, position string. Returns the number applied.
local posp, docp, avp, ttl, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local cl = tonumber(ARGV[6])
local geo_args, seen_args = {}, {}
local applied = 0
for i = 7, #ARGV, 2 do
  local id, val = ARGV[i], ARGV[i + 1]
  local ts, lat, lon = string.match(val, '^(%d+) (%S+) (%S+)')
  local cells = string.sub(val, -cl)
  local pk = posp .. id
  local old = redis.call('GET', pk)
  local same = false
  local ok = true
  if old then
    if tonumber(ts) < tonumber(string.match(old, '^(%d+)')) then ok = false end
    same = string.sub(old, -cl) == cells
  end
  if ok then
    redis.call('SET', pk, val, 'PX', ttl)
    geo_args[#geo_args + 1] = lon
    geo_args[#geo_args + 1] = lat
    geo_args[#geo_args + 1] = id
    if not old then
      -- Only a new (or returning) doctor is scored: sweep re-scores live ones from their key's TTL,
      -- which saves a sorted-set update on every other fix.
      seen_args[#seen_args + 1] = now
      seen_args[#seen_args + 1] = id
    end
    if not same then
      local dk = docp .. id
      local d = redis.call('HMGET', dk, 'st', 'specs', 'cells')
      if d[3] ~= cells then
        if d[1] == 'available' then move(id, avp, d[3], cells, d[2]) end
        redis.call('HSET', dk, 'cells', cells)
      end
    end
    applied = applied + 1
  end
end
-- Batched, in chunks well under Lua's unpack limit; order kept, so a doctor twice ends at the later.
for s = 1, #geo_args, 3000 do
  redis.call('GEOADD', KEYS[1], unpack(geo_args, s, math.min(s + 2999, #geo_args)))
end
for s = 1, #seen_args, 2000 do
  redis.call('ZADD', KEYS[2], unpack(seen_args, s, math.min(s + 1999, #seen_args)))
end
return applied
"""
)

_FORGET_LUA = """
local function forget(id, posp, docp, avp)
  local existed = redis.call('DEL', posp .. id)
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  local dk = docp .. id
  local d = redis.call('HMGET', dk, 'st', 'specs', 'cells')
  if d[3] then
    if d[1] == 'available' then membership('SREM', id, avp, d[3], d[2]) end
    redis.call('HDEL', dk, 'cells')
  end
  return existed
end
"""

REMOVE = (
    MEMBERSHIP_LUA
    + _FORGET_LUA
    + """
-- KEYS: geo, seen. ARGV: pos prefix, doc prefix, avail prefix, id. Returns 1 if a position existed.
return forget(ARGV[4], ARGV[1], ARGV[2], ARGV[3])
"""
)

SWEEP = (
    MEMBERSHIP_LUA
    + _FORGET_LUA
    + """
-- KEYS: geo, seen. ARGV: pos prefix, doc prefix, avail prefix, now ms, ttl ms, batch size.
-- Takes up to batch-size doctors scored at or before now - ttl. One whose position key still lives
-- was upserted since: it is re-scored with its last write time (now - ttl + remaining TTL, so past
-- the cutoff). The others are forgotten. Returns {examined, forgotten}.
local posp, docp, avp = ARGV[1], ARGV[2], ARGV[3]
local now, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - ttl, 'LIMIT', 0, ARGV[6])
local forgotten = 0
for _, id in ipairs(ids) do
  local left = redis.call('PTTL', posp .. id)
  if left > 0 then
    redis.call('ZADD', KEYS[2], now - ttl + left, id)
  else
    forget(id, posp, docp, avp)
    forgotten = forgotten + 1
  end
end
return {#ids, forgotten}
"""
)

SET_SPECIALTIES = (
    MEMBERSHIP_LUA
    + """
-- KEYS: doctor record. ARGV: avail prefix, id, new specs (space-separated, may be empty).
local d = redis.call('HMGET', KEYS[1], 'st', 'specs', 'cells')
if d[1] == 'available' and d[3] and d[3] ~= '' then
  local old, new = {}, {}
  if d[2] then for s in string.gmatch(d[2], '%S+') do old[s] = true end end
  for s in string.gmatch(ARGV[3], '%S+') do new[s] = true end
  for cell in string.gmatch(d[3], '%S+') do
    local base = ARGV[1] .. cell .. ':'
    for s in pairs(old) do if not new[s] then redis.call('SREM', base .. s, ARGV[2]) end end
    for s in pairs(new) do if not old[s] then redis.call('SADD', base .. s, ARGV[2]) end end
  end
end
if ARGV[3] == '' then redis.call('HDEL', KEYS[1], 'specs')
else redis.call('HSET', KEYS[1], 'specs', ARGV[3]) end
return 1
"""
)

NEAREST = f"""
-- KEYS: geo (routing only). ARGV: 1 avail prefix, 2 pos prefix, 3 specialty ('*' = any), 4 lat,
-- 5 lon, 6 radius m, 7 k, 8 min ts (freshness), 9 number of seed candidates, then seed ids, then the
-- number of levels, then per level (a resolution: fine, then coarse): the number of rings n and n
-- pairs (cells, geometries) for rings r0 .. r0+n-1. Rings r0 .. r0+n-2 are read; the last ring's
-- geometries only bound the distance of everything beyond. A level that does not settle hands over
-- to the next, which starts afresh (its cells hold every candidate of the previous one).
-- Returns {{settled, id1, pos1, id2, pos2, ...}}, the best k by (distance, id); settled = 0 when cells
-- beyond the last level's last ring could still hold a closer candidate (the caller sends more rings
-- of that level, with the best so far as seeds).
local avp, posp, spec = ARGV[1], ARGV[2], ARGV[3]
local qlat, qlon = tonumber(ARGV[4]), tonumber(ARGV[5])
local radius, k, mints = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local R = {EARTH_RADIUS_M!r}
local RAD = math.pi / 180.0
local phi1 = qlat * RAD
local cphi1 = math.cos(phi1)
local function hav(lat, lon)
  local phi2 = lat * RAD
  local s_lat = math.sin((phi2 - phi1) / 2)
  local s_lon = math.sin((lon - qlon) * RAD / 2)
  local a = s_lat * s_lat + cphi1 * math.cos(phi2) * s_lon * s_lon
  if a > 1.0 then a = 1.0 end
  return 2 * R * math.asin(math.sqrt(a))
end
local best = {{}}
local function consider(id, v)
  if not v then return end
  local ts, la, lo = string.match(v, '^(%d+) (%S+) (%S+)')
  if tonumber(ts) < mints then return end
  local d = hav(tonumber(la), tonumber(lo))
  if d > radius then return end
  local n = #best
  if n >= k then
    local w = best[n]
    if d > w[1] or (d == w[1] and id >= w[2]) then return end
  end
  local i = n
  while i >= 1 and (best[i][1] > d or (best[i][1] == d and best[i][2] > id)) do i = i - 1 end
  table.insert(best, i + 1, {{d, id, v}})
  if #best > k then best[#best] = nil end
end
local function read(ids)
  for s = 1, #ids, 1000 do
    local e = math.min(s + 999, #ids)
    local pk = {{}}
    for i = s, e do pk[#pk + 1] = posp .. ids[i] end
    local vals = redis.call('MGET', unpack(pk))
    for i = s, e do consider(ids[i], vals[i - s + 1]) end
  end
end
local j = 10
local nseed = tonumber(ARGV[9])
if nseed > 0 then
  local seeds = {{}}
  for i = 1, nseed do seeds[i] = ARGV[j + i - 1] end
  read(seeds)
  j = j + nseed
end
local settled = 0
local nlevels = tonumber(ARGV[j])
j = j + 1
for level = 1, nlevels do
  if level > 1 then best = {{}} end
  local nrings = tonumber(ARGV[j])
  for r = 0, nrings - 2 do
    for cell in string.gmatch(ARGV[j + 1 + 2 * r], '%S+') do
      local ids = redis.call('SMEMBERS', avp .. cell .. ':' .. spec)
      if #ids > 0 then read(ids) end
    end
    local bound = math.huge
    for la, lo, cr in string.gmatch(ARGV[j + 2 + 2 * (r + 1)], '([^,%s]+),([^,%s]+),([^,%s]+)') do
      local b = hav(tonumber(la), tonumber(lo)) - tonumber(cr)
      if b < bound then bound = b end
    end
    if bound > radius or (#best >= k and best[k][1] < bound) then
      settled = 1
      break
    end
  end
  if settled == 1 then break end
  j = j + 1 + 2 * nrings
end
local out = {{settled}}
for _, c in ipairs(best) do
  out[#out + 1] = c[2]
  out[#out + 1] = c[3]
end
return out
"""

WITHIN_BOX = """
-- KEYS: geo. ARGV: 1 pos prefix, 2 doc prefix, 3 centre lon, 4 centre lat, 5 width m, 6 height m,
-- 7 south, 8 west, 9 north, 10 east, 11 min ts ('' = no freshness filter).
-- GEO finds a superset (its box is in metres and its coordinates are 52-bit geohashes); the exact
-- stored positions decide. Returns {id, pos, status, specs, ...} for live positions in the box.
local ids = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[3], ARGV[4],
  'BYBOX', ARGV[5], ARGV[6], 'm')
local south, west, north, east = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local mints = tonumber(ARGV[11])
local out = {}
for s = 1, #ids, 1000 do
  local e = math.min(s + 999, #ids)
  local pk = {}
  for i = s, e do pk[#pk + 1] = ARGV[1] .. ids[i] end
  local vals = redis.call('MGET', unpack(pk))
  for i = s, e do
    local v = vals[i - s + 1]
    if v then
      local ts, la, lo = string.match(v, '^(%d+) (%S+) (%S+)')
      la, lo = tonumber(la), tonumber(lo)
      if la >= south and la <= north and lo >= west and lo <= east
         and (mints == nil or tonumber(ts) >= mints) then
        local d = redis.call('HMGET', ARGV[2] .. ids[i], 'st', 'specs')
        out[#out + 1] = ids[i]
        out[#out + 1] = v
        out[#out + 1] = d[1] or 'offline'
        out[#out + 1] = d[2] or ''
      end
    end
  end
end
return out
"""
