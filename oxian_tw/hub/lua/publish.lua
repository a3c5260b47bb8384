-- KEYS: head, stream, meta, idempotency key.
-- ARGV: body, age ms, max events, max bytes, pub/sub channel, channel,
--       "1" when the idempotency key counts, its window in ms.
-- Returns {full id, 1 if an earlier publish with the key answered}.
local head, stream, meta = KEYS[1], KEYS[2], KEYS[3]
if ARGV[7] == '1' then
  local known = redis.call('GET', KEYS[4])
  if known then
    return {known, 1}
  end
end
-- The epoch names the history: when Redis loses it (FLUSHDB, a restart
-- without persistence), the head goes with it and a new epoch begins.
local epoch = redis.call('HGET', head, 'epoch')
local fresh = false
if not epoch then
  epoch = string.format('%x', now * 1000 + tonumber(t[2]) % 1000)
  redis.call('HSET', head, 'epoch', epoch)
  fresh = true
end
local ms, n = now, 1
local last = redis.call('HGET', head, 'last')
if last then
  local lms, ln = parse(last)
  if lms > ms then ms = lms end
  n = ln + 1
end
local id = fmt(ms, n)
local evicted = evicted_of(stream, meta)
if fresh then
  -- Nothing of a new epoch was ever lost.
  evicted = '0-0'
end
if redis.call('EXISTS', meta) == 0 or redis.call('EXISTS', stream) == 0 then
  -- A new record: whatever the stream still holds without one is dropped
  -- and counted as evicted.
  local kept = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if #kept > 0 and later(kept[1][1], evicted) then
    evicted = kept[1][1]
  end
  redis.call('DEL', stream, meta)
  redis.call('HSET', meta, 'evicted', evicted, 'bytes', 0)
end
redis.call('XADD', stream, id, 'w', ARGV[1])
redis.call('HSET', head, 'last', id)
local bytes = redis.call('HINCRBY', meta, 'bytes', #ARGV[1])
local count = redis.call('XLEN', stream)
local max_count, max_bytes = tonumber(ARGV[3]), tonumber(ARGV[4])
local trimmed = nil
local done = false
while not done do
  local batch = redis.call('XRANGE', stream, '-', '+', 'COUNT', 100)
  if #batch == 0 then break end
  for _, entry in ipairs(batch) do
    if count > max_count or bytes > max_bytes or parse(entry[1]) <= cutoff then
      count = count - 1
      bytes = bytes - #entry[2][2]
      trimmed = entry[1]
    else
      done = true
      break
    end
  end
  if trimmed then
    local tms, tn = parse(trimmed)
    redis.call('XTRIM', stream, 'MINID', fmt(tms, tn + 1))
  end
end
if trimmed then
  redis.call('HSET', meta, 'evicted', trimmed, 'bytes', bytes)
end
redis.call('HSET', meta, 'newest', id)
local ttl = tonumber(ARGV[2]) + 1000
redis.call('PEXPIRE', stream, ttl)
-- The record outlives the stream, so that a lost stream is noticed.
redis.call('PEXPIRE', meta, 2 * ttl)
local full = epoch .. '-' .. id
if ARGV[7] == '1' then
  redis.call('SET', KEYS[4], full, 'PX', ARGV[8])
end
redis.call('PUBLISH', ARGV[5], 'e\n' .. ARGV[6] .. '\n' .. full .. '\n' .. ARGV[1])
return {full, 0}
