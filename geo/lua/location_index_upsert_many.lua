-- Upsert many positions. A position older than the stored one is skipped; a new (or returning) doctor
-- is scored in the seen set; a doctor whose cells changed moves in the availability sets (when
-- available) and gets the new `cells` on its record. Needs location_index_membership and
-- location_index_move.
-- KEYS[1]: geo sorted set (GEOADD)
-- KEYS[2]: seen sorted set (id -> ms of first sight)
-- ARGV[1]: position key prefix
-- ARGV[2]: doctor record key prefix
-- ARGV[3]: availability set prefix
-- ARGV[4]: position TTL, ms
-- ARGV[5]: now, epoch ms
-- ARGV[6]: length of the cells suffix of a position string
-- ARGV[7..]: per position two arguments: doctor id, position string
-- Returns: the number of positions applied.
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
