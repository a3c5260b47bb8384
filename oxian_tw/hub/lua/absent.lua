-- KEYS: presence hash, expiry sorted set (as presence.lua).
-- ARGV: pub/sub channel, publish command, presence id, leave event or "".
-- A stream that ended leaves, with its leave event when it has one.
local removed = redis.call('HDEL', KEYS[1], ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[3])
if removed == 1 and #ARGV[4] > 0 then
  redis.call(ARGV[2], ARGV[1], 'p' .. ARGV[4])
end
return 0
