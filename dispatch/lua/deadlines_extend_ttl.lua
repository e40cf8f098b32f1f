-- Prelude: defines extend_ttl(until_ms, idle_ms): extends (never shortens) the TTL of every key in
-- KEYS to reach `until_ms` (epoch ms, caller's clock) + `idle_ms`, measured from Redis TIME.
-- KEYS[1..]: every key of the calling script
-- ARGV: none
-- Returns: nothing (defines a function).
local function extend_ttl(until_ms, idle_ms)
  local t = redis.call('TIME')
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local ttl = math.max(until_ms - now_ms, 0) + idle_ms
  for i = 1, #KEYS do
    if redis.call('PTTL', KEYS[i]) < ttl then
      redis.call('PEXPIRE', KEYS[i], math.floor(ttl))
    end
  end
end
