-- The channel's stream position. Needs broker_ensure_meta.
-- KEYS[1]: meta hash
-- KEYS[2]: history stream
-- KEYS[3]: publication keys (sorted set: key -> offset)
-- ARGV[1]: meta TTL, ms
-- ARGV[2]: epoch candidate (used if the meta was lost)
-- Returns: {top offset, epoch}.
local epoch, top = ensure_meta(ARGV[2], ARGV[1])
return {top, epoch}
