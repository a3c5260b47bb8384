-- KEYS: presence hash (presence id -> info JSON, LF, leave event or
--       nothing), expiry sorted set (presence id -> expiry ms).
-- ARGV: ttl ms, pub/sub channel, publish command, what to return ("0":
--       nothing, "1": who is present, "2": how many), then per member to
--       keep present: id, value, join event or "".
-- Members whose expiry passed (their process stopped renewing: killed)
-- leave first, with their leave event when they had one.
local info, expiry = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = redis.call('ZRANGEBYSCORE', expiry, '-inf', now)
for _, sid in ipairs(gone) do
  local value = redis.call('HGET', info, sid)
  redis.call('HDEL', info, sid)
  redis.call('ZREM', expiry, sid)
  if value then
    local leave = string.sub(value, string.find(value, '\n', 1, true) + 1)
    if #leave > 0 then
      redis.call(ARGV[3], ARGV[2], 'p' .. leave)
    end
  end
end
local ttl = tonumber(ARGV[1])
for i = 5, #ARGV, 3 do
  local new = redis.call('HSET', info, ARGV[i], ARGV[i + 1])
  redis.call('ZADD', expiry, now + ttl, ARGV[i])
  if new == 1 and #ARGV[i + 2] > 0 then
    redis.call(ARGV[3], ARGV[2], 'p' .. ARGV[i + 2])
  end
end
if #ARGV >= 5 then
  redis.call('PEXPIRE', info, 2 * ttl)
  redis.call('PEXPIRE', expiry, 2 * ttl)
end
if ARGV[4] == '1' then
  return redis.call('HGETALL', info)
elseif ARGV[4] == '2' then
  return redis.call('HLEN', info)
end
return 0
