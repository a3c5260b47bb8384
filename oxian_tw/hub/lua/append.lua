-- Publishes, in order: a batch of those a process made in one reactor
-- turn on channels of one server (one call, not one each).
-- KEYS: the keys the call declares (every key on one Redis; on a Cluster
--       the first publish's, which route the call: a declared key's slot
--       must be the same for all, and a script may touch keys of other
--       slots the node serves).
-- ARGV: max events, max bytes, age ms, publish command (PUBLISH or
--       SPUBLISH), the idempotency window ms, "1" to touch every key
--       before writing any (a Cluster: a key this node does not serve, or
--       that a migration moved, then fails the call before it wrote
--       anything), then per publish: record, history (as common.lua),
--       idempotency key, body, pub/sub channel, "1" when the idempotency
--       key counts.
-- Returns per publish {epoch, n, 1 if an earlier publish with the key
-- answered}, flattened.
-- O(1) amortised per publish, never a scan: XADD trims by count (a Redis
-- Stream frees whole nodes, so it keeps at least max events); every 16th
-- publish of a channel reads its oldest entries to trim by bytes and age.
local max_count, max_bytes = tonumber(ARGV[1]), tonumber(ARGV[2])
local age = tonumber(ARGV[3])
local command, window = ARGV[4], ARGV[5]

local function publish(idempotency, body, pubsub, counts)
  if counts == '1' then
    local known = redis.call('GET', idempotency)
    if known then
      local e, n = string.match(known, '^(%x+)-(%d+)$')
      return e, tonumber(n), 1
    end
  end
  local epoch, n, c, x = record()
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
    -- record outlives its history: a client resuming after the history
    -- aged out is told it missed nothing (its n is the last) or gets reset.
    redis.call('PEXPIRE', stream, history_ttl(age))
    redis.call('PEXPIRE', meta, 2 * history_ttl(age))
    redis.call('HSET', meta, 'n', n, 'c', c, 'x', now)
  else
    redis.call('HSET', meta, 'n', n, 'c', c)
  end
  local id = epoch .. '-' .. n
  if counts == '1' then
    redis.call('SET', idempotency, id, 'PX', window)
  end
  redis.call(command, pubsub, 'e' .. id .. '\n' .. body)
  return epoch, n, 0
end

local count = (#ARGV - 6) / 6
if ARGV[6] == '1' then
  for i = 0, count - 1 do
    local at = 7 + 6 * i
    redis.call('EXISTS', ARGV[at], ARGV[at + 1], ARGV[at + 2])
  end
end
local out = {}
for i = 0, count - 1 do
  local at = 7 + 6 * i
  -- (common.lua's record() reads these two.)
  meta, stream = ARGV[at], ARGV[at + 1]
  local e, n, earlier = publish(ARGV[at + 2], ARGV[at + 3], ARGV[at + 4],
    ARGV[at + 5])
  out[3 * i + 1] = e
  out[3 * i + 2] = n
  out[3 * i + 3] = earlier
end
return out
