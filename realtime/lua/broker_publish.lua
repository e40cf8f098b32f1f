-- Publish one event: the next offset, the frame assembled around it, XADD and trim by size and age
-- (or no history at size 0), TTLs, SPUBLISH of "<offset>|<epoch>|<time_ms>|<type>\n" .. frame. With a
-- publication key that names a publication still in history (same epoch, within size and age), publish
-- nothing and return that publication instead. Needs broker_ensure_meta.
-- KEYS[1]: meta hash
-- KEYS[2]: history stream
-- KEYS[3]: publication keys (sorted set: key -> offset; only keys of publications in history)
-- ARGV[1]: live (shard) channel
-- ARGV[2]: frame head (up to the offset)
-- ARGV[3]: frame tail (after the epoch)
-- ARGV[4]: event type
-- ARGV[5]: time, epoch ms
-- ARGV[6]: history size (0 = no history)
-- ARGV[7]: history max age, ms
-- ARGV[8]: meta TTL, ms
-- ARGV[9]: epoch candidate (used if the meta was lost)
-- ARGV[10]: publication key ('' = none)
-- Returns: {offset, epoch} when published; {offset, epoch, time_ms, type, frame} of the earlier
--   publication when the key named one still in history (nothing published).
local function trim_age(cutoff)
  while true do
    local batch = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 16)
    local n = #batch
    if n == 0 then return end
    for i = 1, n do
      if tonumber(batch[i][2][2]) > cutoff then
        if i > 1 then redis.call('XTRIM', KEYS[2], 'MINID', batch[i][1]) end
        return
      end
    end
    local last = tonumber(string.match(batch[n][1], '^(%d+)'))
    redis.call('XTRIM', KEYS[2], 'MINID', last + 1)
  end
end

local epoch = ensure_meta(ARGV[9], ARGV[8])
local size = tonumber(ARGV[6])
local cutoff = tonumber(ARGV[5]) - tonumber(ARGV[7])
local key = ARGV[10]
if key ~= '' and size > 0 then
  local known = redis.call('ZSCORE', KEYS[3], key)
  if known then
    -- The entry itself is the proof: a key outlives its publication until the next keyed trim.
    local entry = redis.call('XRANGE', KEYS[2], known, known)
    if #entry == 1 and tonumber(entry[1][2][2]) > cutoff then
      local f = entry[1][2]
      return {tonumber(known), epoch, f[2], f[4], f[6]}
    end
  end
end
local offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
local frame = ARGV[2] .. offset .. ',"epoch":"' .. epoch .. '"' .. ARGV[3]
if size > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', size, offset, 't', ARGV[5], 'y', ARGV[4], 'd', frame)
  trim_age(cutoff)
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
  if key ~= '' then
    -- Keep only keys whose publication is still in history (the oldest entry bounds them).
    local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
    redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. string.match(first[1][1], '^(%d+)'))
    redis.call('ZADD', KEYS[3], offset, key)
    redis.call('PEXPIRE', KEYS[3], ARGV[7])
  end
else
  redis.call('DEL', KEYS[2], KEYS[3])
end
redis.call('SPUBLISH', ARGV[1], offset .. '|' .. epoch .. '|' .. ARGV[5] .. '|' .. ARGV[4] .. '\n' .. frame)
return {offset, epoch}
