-- Prelude: defines move(id, avp, old, new, specs): moves an available doctor's availability
-- membership from the space-separated cells `old` (nil: none) to `new`, touching only the resolutions
-- whose cell changed. Needs location_index_membership.
-- KEYS: none
-- ARGV: none
-- Returns: nothing (defines a function).
local function move(id, avp, old, new, specs)
  local o, n = {}, {}
  if old then for c in string.gmatch(old, '%S+') do o[#o + 1] = c end end
  for c in string.gmatch(new, '%S+') do n[#n + 1] = c end
  for i = 1, math.max(#o, #n) do
    if o[i] ~= n[i] then
      if o[i] then membership('SREM', id, avp, o[i], specs) end
      if n[i] then membership('SADD', id, avp, n[i], specs) end
    end
  end
end
