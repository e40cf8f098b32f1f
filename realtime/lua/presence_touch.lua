-- Extend the expiry of present clients. Needs presence_prelude.
-- KEYS[1]: info hash
-- KEYS[2]: expiry sorted set
-- ARGV[1]: now, epoch ms
-- ARGV[2]: the entries' new expiry, epoch ms
-- ARGV[3]: key TTL, ms
-- ARGV[4..]: client ids
-- Returns: the ids that were not present.
prune(ARGV[1])
local missing = {}
local touched = 0
for i = 4, #ARGV do
  if redis.call('ZSCORE', KEYS[2], ARGV[i]) then
    redis.call('ZADD', KEYS[2], ARGV[2], ARGV[i])
    touched = touched + 1
  else
    missing[#missing + 1] = ARGV[i]
  end
end
if touched > 0 then extend_ttl(ARGV[3]) end
return missing
