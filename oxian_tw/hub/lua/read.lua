-- KEYS: record, history (as common.lua).
-- ARGV: mode ("head", "after", "since", "earliest" or "tail"), the epoch
--       and n asked to resume after, the count (tail), age ms, max bytes,
--       max events, and for "since" the SHA-1 (hex) of the event at that n
--       as the process delivered it ("" when it does not know it).
--       "since" is "after" for a process that was live up to that point:
--       on another epoch it is a reset followed by everything the new
--       epoch kept (what came after the change, for the epoch it replaced).
--       When the channel went back (its n is below the process's) or the
--       event at that n is not the one delivered, a failover lost events
--       the process had delivered and others were numbered in their place:
--       the channel gets a new epoch (pe, pn remember the change), so that
--       every id given before is a reset, never a silent hole.
-- Returns {epoch, head n, 1 when "after" cannot be resumed, then n and
-- body of each event, oldest first}. A channel without a record gets one.
-- What publishes did not trim yet (Redis frees whole nodes; bytes and age
-- are checked every 16th publish) is left out here: never more than the
-- bounds are served.
local epoch, n, c = record()
local age = tonumber(ARGV[5])
local max_bytes = tonumber(ARGV[6])
local oldest_n = n - tonumber(ARGV[7])
-- A channel someone follows keeps its record.
redis.call('PEXPIRE', meta, 2 * history_ttl(age))
local out = {epoch, n, 0}
local mode = ARGV[1]
if mode == 'head' then
  return out
end
local cutoff = now - age
-- Whether an entry is within the bounds (not older than the age, and
-- among the newest max bytes).
local function kept(entry)
  local fields = entry[2]
  return n_of(entry[1]) > oldest_n and tonumber(fields[4]) > cutoff
    and c - tonumber(fields[6]) + #fields[2] <= max_bytes
end
local from = nil
if mode == 'since' and ARGV[2] ~= epoch then
  out[3] = 1
  mode = 'earliest'
  if ARGV[2] == redis.call('HGET', meta, 'pe') then
    from = tonumber(redis.call('HGET', meta, 'pn'))
  end
elseif mode == 'since' then
  local after = tonumber(ARGV[3])
  local diverged = after > n
  if not diverged and ARGV[8] ~= '' and after > 0 then
    local at = redis.call('XRANGE', stream, after .. '-0', after .. '-0')[1]
    -- (Trimmed: it cannot be told; "after" below decides.)
    diverged = at ~= nil and redis.sha1hex(at[2][2]) ~= ARGV[8]
  end
  if diverged then
    local renewed = string.sub(redis.sha1hex(meta .. epoch .. t[1] .. t[2]), 1, 10)
    redis.call('HSET', meta, 'e', renewed, 'pe', epoch, 'pn', n)
    return {renewed, n, 1}
  end
  mode = 'after'
end
local entries
if mode == 'after' then
  local after = tonumber(ARGV[3])
  if ARGV[2] ~= epoch or after > n then
    out[3] = 1
    return out
  end
  if after == n then
    return out
  end
  entries = redis.call('XRANGE', stream, '(' .. after .. '-0', '+')
  -- The event right after it must be there, and within the bounds: else
  -- it was evicted (or the history lost), and the client missed it.
  local first = entries[1]
  if not first or n_of(first[1]) ~= after + 1 or not kept(first) then
    out[3] = 1
    return out
  end
elseif mode == 'tail' then
  local newest = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', tonumber(ARGV[4]))
  entries = {}
  for i = #newest, 1, -1 do
    entries[#entries + 1] = newest[i]
  end
else
  entries = redis.call('XRANGE', stream, '-', '+')
end
for _, entry in ipairs(entries) do
  if kept(entry) and (from == nil or n_of(entry[1]) > from) then
    out[#out + 1] = n_of(entry[1])
    out[#out + 1] = entry[2][2]
  end
end
return out
