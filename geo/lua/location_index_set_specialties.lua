-- Replace a doctor's specialties, moving an available doctor between the specialty sets of its cells.
-- Needs location_index_membership.
-- KEYS[1]: doctor record hash
-- ARGV[1]: availability set prefix
-- ARGV[2]: doctor id
-- ARGV[3]: new specialties, space-separated (may be empty)
-- Returns: 1.
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
