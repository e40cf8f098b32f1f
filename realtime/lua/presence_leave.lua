-- Remove one client from a channel.
-- KEYS[1]: info hash
-- KEYS[2]: expiry sorted set
-- ARGV[1]: now, epoch ms
-- ARGV[2]: client id
-- Returns: 1 if the client was present (not expired), else 0.
local score = redis.call('ZSCORE', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[1], ARGV[2])
if score and tonumber(score) > tonumber(ARGV[1]) then return 1 end
return 0
