-- The clients present on a channel.
-- KEYS[1]: info hash
-- KEYS[2]: expiry sorted set
-- ARGV[1]: now, epoch ms
-- Returns: {client id, expires_ms, info, ...} for the entries present at now.
local rows = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. ARGV[1], '+inf', 'WITHSCORES')
local out = {}
for i = 1, #rows, 2 do
  local info = redis.call('HGET', KEYS[1], rows[i])
  if info then
    out[#out + 1] = rows[i]
    out[#out + 1] = rows[i + 1]
    out[#out + 1] = info
  end
end
return out
