-- Complete a claim: remove the deadline if the claim is still the current one.
-- KEYS[1]: due sorted set
-- KEYS[2]: meta hash
-- KEYS[3]: payload hash
-- ARGV[1]: deadline key
-- ARGV[2]: claim token
-- Returns: 1 if this claim was current and is now removed, else 0.
local meta = redis.call('HGET', KEYS[2], ARGV[1])
if not meta or string.match(meta, ':(%d+)$') ~= ARGV[2] then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return 1
