-- Cancel a deadline, claimed or not.
-- KEYS[1]: due sorted set
-- KEYS[2]: meta hash
-- KEYS[3]: payload hash
-- ARGV[1]: deadline key
-- Returns: 1 if the key existed, else 0.
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
return removed
