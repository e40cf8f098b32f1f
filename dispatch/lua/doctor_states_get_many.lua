-- Read many doctor records.
-- KEYS[1..]: doctor record hashes
-- ARGV: none
-- Returns: per key one string, "st since ver =ref" ("-" for an absent st, since or ver; nothing after
--   the last space without a ref; the ref last, as it may hold spaces): far cheaper for the client to
--   parse than a nested reply.
local out = {}
for i, key in ipairs(KEYS) do
  local f = redis.call('HMGET', key, 'st', 'ref', 'since', 'ver')
  local ref = f[2] and ('=' .. f[2]) or ''
  out[i] = (f[1] or '-') .. ' ' .. (f[3] or '-') .. ' ' .. (f[4] or '-') .. ' ' .. ref
end
return out
