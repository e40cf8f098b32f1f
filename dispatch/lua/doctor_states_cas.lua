-- Compare-and-set of one doctor's state; a change into or out of 'available' also adds the doctor to
-- (or removes it from) the availability sets of its cells. Needs location_index_membership (geo).
-- KEYS[1]: doctor record hash
-- KEYS[2]: the set of engaged doctors (offered or busy)
-- ARGV[1]: doctor id
-- ARGV[2]: availability set prefix
-- ARGV[3]: expected statuses, space-separated
-- ARGV[4]: expected ref ('' = any, else '=' .. ref)
-- ARGV[5]: expected version ('' = any)
-- ARGV[6]: new status
-- ARGV[7]: new ref ('' = none)
-- ARGV[8]: now, epoch ms
-- Returns: {ok, status, ref, since, version}, the state after (ok = 1 if it was set).
local d = redis.call('HMGET', KEYS[1], 'st', 'ref', 'since', 'ver', 'specs', 'cells')
local st, ref, since, ver = d[1] or 'offline', d[2] or '', d[3] or '0', tonumber(d[4] or '0')
local match = false
for e in string.gmatch(ARGV[3], '%S+') do
  if e == st then match = true end
end
if match and ARGV[4] ~= '' and ARGV[4] ~= '=' .. ref then match = false end
if match and ARGV[5] ~= '' and tonumber(ARGV[5]) ~= ver then match = false end
if not match then return {0, st, ref, since, tostring(ver)} end
local new, nref, now = ARGV[6], ARGV[7], ARGV[8]
ver = ver + 1
redis.call('HSET', KEYS[1], 'st', new, 'since', now, 'ver', tostring(ver))
if nref == '' then redis.call('HDEL', KEYS[1], 'ref') else redis.call('HSET', KEYS[1], 'ref', nref) end
if (st == 'available') ~= (new == 'available') then
  membership(new == 'available' and 'SADD' or 'SREM', ARGV[1], ARGV[2], d[6], d[5])
end
-- Engaged doctors are listed for the repair sweep. SADD on every move into offered/busy (not only on
-- a change) so that a record written before the set existed joins it at its next move.
if new == 'offered' or new == 'busy' then
  redis.call('SADD', KEYS[2], ARGV[1])
elseif st == 'offered' or st == 'busy' then
  redis.call('SREM', KEYS[2], ARGV[1])
end
return {1, new, nref, now, tostring(ver)}
