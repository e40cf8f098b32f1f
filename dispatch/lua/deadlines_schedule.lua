-- Schedule (or reschedule) a deadline: a new claim token, attempt 0. Needs deadlines_extend_ttl.
-- KEYS[1]: due sorted set
-- KEYS[2]: meta hash
-- KEYS[3]: payload hash
-- KEYS[4]: token counter
-- ARGV[1]: deadline key
-- ARGV[2]: due, epoch ms
-- ARGV[3]: payload
-- ARGV[4]: idle TTL, ms
-- Returns: 1 if the key was new, else 0.
local token = redis.call('INCR', KEYS[4])
local is_new = redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. ':0:' .. token)
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
extend_ttl(tonumber(ARGV[2]), tonumber(ARGV[4]))
return is_new
