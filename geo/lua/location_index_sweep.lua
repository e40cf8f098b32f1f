-- Sweep expired positions. Takes up to batch-size doctors scored at or before now - ttl. One whose
-- position key still lives was upserted since: it is re-scored with its last write time
-- (now - ttl + remaining TTL, so past the cutoff). The others are forgotten. Needs
-- location_index_membership and location_index_forget.
-- KEYS[1]: geo sorted set
-- KEYS[2]: seen sorted set
-- ARGV[1]: position key prefix
-- ARGV[2]: doctor record key prefix
-- ARGV[3]: availability set prefix
-- ARGV[4]: now, epoch ms
-- ARGV[5]: position TTL, ms
-- ARGV[6]: batch size
-- Returns: {examined, forgotten}.
local posp, docp, avp = ARGV[1], ARGV[2], ARGV[3]
local now, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - ttl, 'LIMIT', 0, ARGV[6])
local forgotten = 0
for _, id in ipairs(ids) do
  local left = redis.call('PTTL', posp .. id)
  if left > 0 then
    redis.call('ZADD', KEYS[2], now - ttl + left, id)
  else
    forget(id, posp, docp, avp)
    forgotten = forgotten + 1
  end
end
return {#ids, forgotten}
