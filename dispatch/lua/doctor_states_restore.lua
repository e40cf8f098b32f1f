-- Restore doctors' states after the engine was lost: write each one only if its record holds no
-- status (never set in this engine's life); an existing record is left alone, except that an engaged
-- one (offered/busy) is made a member of the engaged set (records older than the set). A written
-- 'available' joins the availability sets of its cells. Needs location_index_membership (geo).
-- KEYS[1]: the set of engaged doctors (offered or busy)
-- ARGV[1]: doctor record prefix
-- ARGV[2]: availability set prefix
-- ARGV[3]: now, epoch ms
-- ARGV[4..]: triples: doctor id, status, ref ('' = none)
-- Returns: the ids written.
local written = {}
for i = 4, #ARGV, 3 do
  local id, new, nref = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local key = ARGV[1] .. id
  local d = redis.call('HMGET', key, 'st', 'specs', 'cells')
  if d[1] then
    if d[1] == 'offered' or d[1] == 'busy' then redis.call('SADD', KEYS[1], id) end
  else
    redis.call('HSET', key, 'st', new, 'since', ARGV[3], 'ver', '1')
    if nref ~= '' then redis.call('HSET', key, 'ref', nref) end
    if new == 'available' then membership('SADD', id, ARGV[2], d[3], d[2]) end
    if new == 'offered' or new == 'busy' then redis.call('SADD', KEYS[1], id) end
    written[#written + 1] = id
  end
end
return written
