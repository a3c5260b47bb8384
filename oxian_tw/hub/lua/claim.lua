-- A record set unless it exists (`IBackend.claim`).
-- KEYS[1]: the record. ARGV: its value, its time to live in ms.
-- Returns the record's value when it exists (nothing set), else nil.
local held = redis.call('GET', KEYS[1])
if held then
  return held
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
