-- The engaged doctors (offered or busy), read from their set; members whose record says otherwise
-- (left by a record deleted or changed outside the scripts) are removed from the set on the way.
-- KEYS[1]: the set of engaged doctors
-- ARGV[1]: doctor record prefix
-- Returns: a flat list: doctor id, then "st since ver =ref" (as doctor_states_get_many), per doctor.
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local f = redis.call('HMGET', ARGV[1] .. id, 'st', 'ref', 'since', 'ver')
  if f[1] == 'offered' or f[1] == 'busy' then
    out[#out + 1] = id
    out[#out + 1] = f[1] .. ' ' .. (f[3] or '-') .. ' ' .. (f[4] or '-') .. ' ' .. (f[2] and ('=' .. f[2]) or '')
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return out
