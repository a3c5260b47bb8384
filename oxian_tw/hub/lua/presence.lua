-- KEYS: presence hash (subscriber id -> info JSON, LF, leave event or
--       nothing), expiry sorted set (subscriber id -> expiry ms).
-- ARGV: ttl ms, pub/sub channel, channel, "1" to return who is present,
--       then per subscriber to keep present: id, value, join event or "".
-- Members whose expiry passed (their process stopped renewing: killed)
-- leave first, with their leave event when they had one.
local info, expiry = KEYS[1], KEYS[2]
local prefix = 'p\n' .. ARGV[3] .. '\n'
local gone = redis.call('ZRANGEBYSCORE', expiry, '-inf', now)
for _, sid in ipairs(gone) do
  local value = redis.call('HGET', info, sid)
  redis.call('HDEL', info, sid)
  redis.call('ZREM', expiry, sid)
  if value then
    local leave = string.sub(value, string.find(value, '\n', 1, true) + 1)
    if #leave > 0 then
      redis.call('PUBLISH', ARGV[2], prefix .. leave)
    end
  end
end
local ttl = tonumber(ARGV[1])
for i = 5, #ARGV, 3 do
  local new = redis.call('HSET', info, ARGV[i], ARGV[i + 1])
  redis.call('ZADD', expiry, now + ttl, ARGV[i])
  if new == 1 and #ARGV[i + 2] > 0 then
    redis.call('PUBLISH', ARGV[2], prefix .. ARGV[i + 2])
  end
end
if redis.call('EXISTS', expiry) == 1 then
  redis.call('PEXPIRE', info, 2 * ttl)
  redis.call('PEXPIRE', expiry, 2 * ttl)
end
if ARGV[4] == '1' then
  return redis.call('HGETALL', info)
end
return 0
