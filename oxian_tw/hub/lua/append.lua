-- KEYS: record, history (as common.lua), idempotency key.
-- ARGV: body, max events, max bytes, age ms, pub/sub channel, publish
--       command (PUBLISH or SPUBLISH), "1" when the key counts, its
--       window ms.
-- Returns {epoch, n, 1 if an earlier publish with the key answered}.
-- O(1) amortised, never a scan: XADD trims by count (a Redis Stream frees
-- whole nodes, so it keeps at least max events); every 16th publish reads
-- the oldest entries to trim by bytes and age.
if ARGV[7] == '1' then
  local known = redis.call('GET', KEYS[3])
  if known then
    local e, n = string.match(known, '^(%x+)-(%d+)$')
    return {e, tonumber(n), 1}
  end
end
local epoch, n, c, x = record()
local body = ARGV[1]
local max_count, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3])
local age = tonumber(ARGV[4])
n = n + 1
c = c + #body
if max_count > 0 then
  redis.call('XADD', stream, 'MAXLEN', '~', max_count, n .. '-0',
    'b', body, 't', now, 'c', c)
else
  redis.call('XADD', stream, 'MAXLEN', 0, n .. '-0', 'b', body, 't', now, 'c', c)
end
if n % 16 == 0 then
  local cutoff = now - age
  for _ = 1, 64 do
    local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
    if not oldest then
      break
    end
    local fields = oldest[2]
    local kept = c - tonumber(fields[6]) + #fields[2]
    if kept <= max_bytes and tonumber(fields[4]) > cutoff then
      break
    end
    redis.call('XTRIM', stream, 'MINID', (n_of(oldest[1]) + 1) .. '-0')
  end
end
if now - x >= age / 2 then
  -- (Not on every publish: two commands fewer, most of the time.) The
  -- record outlives its history: a client resuming after the history aged
  -- out is told it missed nothing (its n is the last) or gets reset.
  redis.call('PEXPIRE', stream, history_ttl(age))
  redis.call('PEXPIRE', meta, 2 * history_ttl(age))
  redis.call('HSET', meta, 'n', n, 'c', c, 'x', now)
else
  redis.call('HSET', meta, 'n', n, 'c', c)
end
local id = epoch .. '-' .. n
if ARGV[7] == '1' then
  redis.call('SET', KEYS[3], id, 'PX', ARGV[8])
end
redis.call(ARGV[6], ARGV[5], 'e' .. id .. '\n' .. body)
return {epoch, n, 0}
