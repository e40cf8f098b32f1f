-- Doctors with a live position in a lat/lon box. GEOSEARCH finds a superset (its box is in metres and
-- its coordinates are 52-bit geohashes); the exact stored positions decide.
-- KEYS[1]: geo sorted set
-- ARGV[1]: position key prefix
-- ARGV[2]: doctor record key prefix
-- ARGV[3]: centre longitude
-- ARGV[4]: centre latitude
-- ARGV[5]: box width, m
-- ARGV[6]: box height, m
-- ARGV[7]: south
-- ARGV[8]: west
-- ARGV[9]: north
-- ARGV[10]: east
-- ARGV[11]: min position ts, epoch ms ('' = no freshness filter)
-- Returns: {id, position string, status, specialties, ...} for live positions in the box.
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
