-- KEYS: presence hash, expiry sorted set (as presence.lua).
-- ARGV: pub/sub channel, channel, subscriber id.
-- A stream that ended leaves, with its leave event when it has one.
local value = redis.call('HGET', KEYS[1], ARGV[3])
redis.call('HDEL', KEYS[1], ARGV[3])
redis.call('ZREM', KEYS[2], ARGV[3])
if value then
  local leave = string.sub(value, string.find(value, '\n', 1, true) + 1)
  if #leave > 0 then
    redis.call('PUBLISH', ARGV[1], 'p\n' .. ARGV[2] .. '\n' .. leave)
  end
end
return 0
