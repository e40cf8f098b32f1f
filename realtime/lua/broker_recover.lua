-- The publications after a position. The epoch check and the read are one step, so a publication
-- cannot slip between them. Needs broker_ensure_meta.
-- KEYS[1]: meta hash
-- KEYS[2]: history stream
-- KEYS[3]: publication keys (sorted set: key -> offset)
-- ARGV[1]: since offset
-- ARGV[2]: since epoch
-- ARGV[3]: now, epoch ms
-- ARGV[4]: history max age, ms
-- ARGV[5]: meta TTL, ms
-- ARGV[6]: epoch candidate (used if the meta was lost)
-- Returns: {ok, top, epoch, failure, [offset, time_ms, type, frame]...}; failure is
--   'epoch_mismatch', 'offset_ahead' or 'offset_too_old' when ok = 0, else ''.
local epoch, top = ensure_meta(ARGV[6], ARGV[5])
if ARGV[2] ~= epoch then return {0, top, epoch, 'epoch_mismatch'} end
local since = tonumber(ARGV[1])
if since > top then return {0, top, epoch, 'offset_ahead'} end
if since == top then return {1, top, epoch, ''} end
local cutoff = tonumber(ARGV[3]) - tonumber(ARGV[4])
local entries = redis.call('XRANGE', KEYS[2], since + 1, '+')
local first = 1
while first <= #entries and tonumber(entries[first][2][2]) <= cutoff do first = first + 1 end
if first > #entries or tonumber(string.match(entries[first][1], '^(%d+)')) ~= since + 1 then
  return {0, top, epoch, 'offset_too_old'}
end
local out = {1, top, epoch, ''}
for i = first, #entries do
  local f = entries[i][2]
  out[#out + 1] = string.match(entries[i][1], '^(%d+)')
  out[#out + 1] = f[2]
  out[#out + 1] = f[4]
  out[#out + 1] = f[6]
end
return out
