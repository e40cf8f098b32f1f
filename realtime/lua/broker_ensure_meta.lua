-- Prelude: defines ensure_meta(candidate, ttl), which returns the channel's epoch and top offset,
-- creating the meta (epoch `candidate`, offset 0, no history, no publication keys) when it was lost,
-- and sets its TTL to `ttl` ms.
-- KEYS[1]: meta hash ('e' epoch, 'o' top offset)
-- KEYS[2]: history stream
-- KEYS[3]: publication keys (sorted set: key -> offset)
-- ARGV: none
-- Returns: nothing (defines a function).
local function ensure_meta(candidate, ttl)
  local m = redis.call('HMGET', KEYS[1], 'e', 'o')
  local epoch, top = m[1], m[2]
  if not epoch then
    epoch, top = candidate, 0
    -- A lost epoch forgets its history and its publication keys (offsets restart at 1).
    redis.call('DEL', KEYS[2], KEYS[3])
    redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
  end
  redis.call('PEXPIRE', KEYS[1], ttl)
  return epoch, tonumber(top)
end
