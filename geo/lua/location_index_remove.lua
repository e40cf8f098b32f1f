-- Remove one doctor from the index (see forget). Needs location_index_membership and
-- location_index_forget.
-- KEYS[1]: geo sorted set
-- KEYS[2]: seen sorted set
-- ARGV[1]: position key prefix
-- ARGV[2]: doctor record key prefix
-- ARGV[3]: availability set prefix
-- ARGV[4]: doctor id
-- Returns: 1 if a position existed, else 0.
return forget(ARGV[4], ARGV[1], ARGV[2], ARGV[3])
