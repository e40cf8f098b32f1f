-- Prelude: defines forget(id, posp, docp, avp): deletes the doctor's position key, removes it from
-- the geo set and the seen set, takes it out of the availability sets of its cells (when available)
-- and clears the record's `cells`; returns 1 if a position key existed. Needs
-- location_index_membership.
-- KEYS[1]: geo sorted set
-- KEYS[2]: seen sorted set
-- ARGV: none
-- Returns: nothing (defines a function).
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
