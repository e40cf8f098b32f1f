-- The k nearest available doctors, by cell rings. Seeds are read first; then per level (a resolution:
-- fine, then coarse) rings r0 .. r0+n-2 are read; the last ring's geometries only bound the distance of
-- everything beyond. A level that does not settle hands over to the next, which starts afresh (its
-- cells hold every candidate of the previous one). The haversine is geo.distance.haversine_m operation
-- for operation; R is geo.distance.EARTH_RADIUS_M (tests/unit/test_lua_scripts.py holds them equal).
-- KEYS[1]: geo sorted set (routing only)
-- ARGV[1]: availability set prefix
-- ARGV[2]: position key prefix
-- ARGV[3]: specialty ('*' = any)
-- ARGV[4]: latitude, degrees
-- ARGV[5]: longitude, degrees
-- ARGV[6]: radius, m
-- ARGV[7]: k
-- ARGV[8]: min position ts, epoch ms (freshness)
-- ARGV[9]: number of seed candidates
-- ARGV[10..]: the seed ids, then the number of levels, then per level the number of rings n and n
--   pairs (cells space-separated, geometries 'lat,lon,circumradius_m' space-separated) for rings
--   r0 .. r0+n-1
-- Returns: {settled, id1, pos1, id2, pos2, ...}, the best k by (distance, id); settled = 0 when cells
--   beyond the last level's last ring could still hold a closer candidate (the caller sends more rings
--   of that level, with the best so far as seeds).
local avp, posp, spec = ARGV[1], ARGV[2], ARGV[3]
local qlat, qlon = tonumber(ARGV[4]), tonumber(ARGV[5])
local radius, k, mints = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local R = 6371008.8
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
local best = {}
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
  table.insert(best, i + 1, {d, id, v})
  if #best > k then best[#best] = nil end
end
local function read(ids)
  for s = 1, #ids, 1000 do
    local e = math.min(s + 999, #ids)
    local pk = {}
    for i = s, e do pk[#pk + 1] = posp .. ids[i] end
    local vals = redis.call('MGET', unpack(pk))
    for i = s, e do consider(ids[i], vals[i - s + 1]) end
  end
end
local j = 10
local nseed = tonumber(ARGV[9])
if nseed > 0 then
  local seeds = {}
  for i = 1, nseed do seeds[i] = ARGV[j + i - 1] end
  read(seeds)
  j = j + nseed
end
local settled = 0
local nlevels = tonumber(ARGV[j])
j = j + 1
for level = 1, nlevels do
  if level > 1 then best = {} end
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
local out = {settled}
for _, c in ipairs(best) do
  out[#out + 1] = c[2]
  out[#out + 1] = c[3]
end
return out
