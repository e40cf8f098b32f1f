-- Publish one event: the next offset, the frame assembled around it, XADD and trim by size and age
-- (or no history at size 0), TTLs, SPUBLISH of "<offset>|<epoch>|<time_ms>|<type>\n" .. frame. Needs
-- broker_ensure_meta.
-- KEYS[1]: meta hash
-- KEYS[2]: history stream
-- ARGV[1]: live (shard) channel
-- ARGV[2]: frame head (up to the offset)
-- ARGV[3]: frame tail (after the epoch)
-- ARGV[4]: event type
-- ARGV[5]: time, epoch ms
-- ARGV[6]: history size (0 = no history)
-- ARGV[7]: history max age, ms
-- ARGV[8]: meta TTL, ms
-- ARGV[9]: epoch candidate (used if the meta was lost)
-- Returns: {offset, epoch}.
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
local offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
local frame = ARGV[2] .. offset .. ',"epoch":"' .. epoch .. '"' .. ARGV[3]
local size = tonumber(ARGV[6])
if size > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', size, offset, 't', ARGV[5], 'y', ARGV[4], 'd', frame)
  trim_age(tonumber(ARGV[5]) - tonumber(ARGV[7]))
  redis.call('PEXPIRE', KEYS[2], ARGV[7])
else
  redis.call('DEL', KEYS[2])
end
redis.call('SPUBLISH', ARGV[1], offset .. '|' .. epoch .. '|' .. ARGV[5] .. '|' .. ARGV[4] .. '\n' .. frame)
return {offset, epoch}
