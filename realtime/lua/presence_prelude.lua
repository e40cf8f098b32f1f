-- Prelude: defines prune(now), which removes the entries expired at `now` (score <= now) from both
-- keys, and extend_ttl(ttl), which extends (never shortens) both keys' TTL to `ttl` ms.
-- KEYS[1]: info hash (client id -> info)
-- KEYS[2]: expiry sorted set (client id -> expiry, epoch ms)
-- ARGV: none
-- Returns: nothing (defines functions).
local function prune(now)
  local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
  for i = 1, #gone, 1000 do
    redis.call('HDEL', KEYS[1], unpack(gone, i, math.min(i + 999, #gone)))
  end
  if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  end
end
local function extend_ttl(ttl)
  for i = 1, 2 do
    if redis.call('PTTL', KEYS[i]) < tonumber(ttl) then
      redis.call('PEXPIRE', KEYS[i], ttl)
    end
  end
end
