-- KEYS: record, history (as common.lua), idempotency key.
-- ARGV: body, max events, max bytes, age ms, pub/sub channel, publish
--       command (PUBLISH or SPUBLISH), "1" when the key counts, its
--       window ms.
-- Returns {epoch, n, 1 if an earlier publish with the key answered}.
-- O(1) amortised: the oldest entry is read once, and at most two are
-- evicted per publish (history converges to its bounds, one in, up to two
-- out), never a scan of the whole history.
if ARGV[7] == '1' then
  local known = redis.call('GET', KEYS[3])
  if known then
    local e, n = string.match(known, '^(%x+)-(%d+)$')
    return {e, tonumber(n), 1}
  end
end
local epoch, n, bytes, first = record()
local body = ARGV[1]
n = n + 1
redis.call('XADD', stream, n .. '-0', 'b', body, 't', now)
bytes = bytes + #body
local max_count, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3])
local age = tonumber(ARGV[4])
local cutoff = now - age
for _ = 1, 2 do
  local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
  if not oldest then
    break
  end
  local oldest_n = n_of(oldest[1])
  if n - oldest_n + 1 > max_count or bytes > max_bytes
      or tonumber(oldest[2][4]) <= cutoff then
    redis.call('XTRIM', stream, 'MINID', (oldest_n + 1) .. '-0')
    bytes = bytes - #oldest[2][2]
    first = oldest_n + 1
  else
    first = oldest_n
    break
  end
end
if first > n then
  bytes = 0
end
redis.call('HSET', meta, 'n', n, 'b', bytes, 'f', first)
redis.call('PEXPIRE', stream, age + 1000)
-- The record outlives its history: a client resuming after the history
-- aged out is told it missed nothing (its n is the last) or gets reset.
redis.call('PEXPIRE', meta, 2 * (age + 1000))
local id = epoch .. '-' .. n
if ARGV[7] == '1' then
  redis.call('SET', KEYS[3], id, 'PX', ARGV[8])
end
redis.call(ARGV[6], ARGV[5], 'e' .. id .. '\n' .. body)
return {epoch, n, 0}
