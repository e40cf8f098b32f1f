-- Claim due deadlines: the read of due members and their move past the lease end happen in one
-- script, which is what makes a claim exclusive across processes. Needs deadlines_extend_ttl.
-- KEYS[1]: due sorted set
-- KEYS[2]: meta hash
-- KEYS[3]: payload hash
-- KEYS[4]: token counter
-- ARGV[1]: now, epoch ms
-- ARGV[2]: most deadlines to claim
-- ARGV[3]: lease end, epoch ms
-- ARGV[4]: idle TTL, ms
-- Returns: a list of {key, due_ms, attempt, token, payload}.
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local out = {}
for _, k in ipairs(members) do
  local meta = redis.call('HGET', KEYS[2], k)
  if meta then
    local due, attempt = string.match(meta, '^(%d+):(%d+):')
    attempt = tonumber(attempt) + 1
    local token = redis.call('INCR', KEYS[4])
    redis.call('HSET', KEYS[2], k, due .. ':' .. attempt .. ':' .. token)
    redis.call('ZADD', KEYS[1], ARGV[3], k)
    out[#out + 1] = {k, due, attempt, token, redis.call('HGET', KEYS[3], k)}
  else
    -- a member without meta cannot be produced by this module; drop it rather than loop on it
    redis.call('ZREM', KEYS[1], k)
  end
end
if #out > 0 then
  extend_ttl(tonumber(ARGV[3]), tonumber(ARGV[4]))
end
return out
