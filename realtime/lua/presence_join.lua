-- Join (or refresh) one client on a channel. Needs presence_prelude.
-- KEYS[1]: info hash
-- KEYS[2]: expiry sorted set
-- ARGV[1]: now, epoch ms
-- ARGV[2]: the entry's expiry, epoch ms
-- ARGV[3]: key TTL, ms
-- ARGV[4]: client id
-- ARGV[5]: info (orjson)
-- Returns: 1 if the client was not present, else 0.
prune(ARGV[1])
local is_new = redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
redis.call('HSET', KEYS[1], ARGV[4], ARGV[5])
extend_ttl(ARGV[3])
return is_new
