-- Prelude: defines ensure_meta(candidate, ttl), which returns the channel's epoch and top offset,
-- creating the meta (epoch `candidate`, offset 0, no history) when it was lost, and sets its TTL to
-- `ttl` ms.
-- KEYS[1]: meta hash ('e' epoch, 'o' top offset)
-- KEYS[2]: history stream
-- ARGV: none
-- Returns: nothing (defines a function).
local function ensure_meta(candidate, ttl)
  local m = redis.call('HMGET', KEYS[1], 'e', 'o')
  local epoch, top = m[1], m[2]
  if not epoch then
    epoch, top = candidate, 0
    redis.call('DEL', KEYS[2])
    redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
  end
  redis.call('PEXPIRE', KEYS[1], ttl)
  return epoch, tonumber(top)
end
