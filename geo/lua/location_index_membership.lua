-- Prelude: defines membership(op, id, avp, cells, specs): runs `op` ('SADD' or 'SREM') with member
-- `id` on the "any" set (avp .. cell .. ':*') and on every specialty set (avp .. cell .. ':' .. spec)
-- of every cell in the space-separated `cells`, for the space-separated `specs` (nil: only "any").
-- A nil or empty `cells` does nothing. Shared by the LocationIndex and DoctorStates scripts.
-- KEYS: none
-- ARGV: none
-- Returns: nothing (defines a function).
local function membership(op, id, avp, cells, specs)
  if not cells or cells == '' then return end
  for cell in string.gmatch(cells, '%S+') do
    local base = avp .. cell .. ':'
    redis.call(op, base .. '*', id)
    if specs then
      for sp in string.gmatch(specs, '%S+') do redis.call(op, base .. sp, id) end
    end
  end
end
