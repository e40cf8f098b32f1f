-- Raise a user's lowest accepted token version to at least ARGV[1] (merge by maximum) and refresh its TTL.
-- KEYS[1]: the user's revocation string
-- ARGV[1]: the version to merge (decimal integer text)
-- ARGV[2]: the entry's TTL, ms
-- Returns: the version held afterwards (decimal integer text).
local current = redis.call('GET', KEYS[1])
if current and tonumber(current) >= tonumber(ARGV[1]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return current
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
