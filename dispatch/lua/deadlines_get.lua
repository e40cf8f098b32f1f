-- Read one deadline in one step.
-- KEYS[1]: due sorted set
-- KEYS[2]: meta hash
-- KEYS[3]: payload hash
-- ARGV[1]: deadline key
-- Returns: {meta, payload, visible_ms}, or nil when the key is unknown.
local meta = redis.call('HGET', KEYS[2], ARGV[1])
if not meta then
  return nil
end
return {meta, redis.call('HGET', KEYS[3], ARGV[1]), redis.call('ZSCORE', KEYS[1], ARGV[1])}
