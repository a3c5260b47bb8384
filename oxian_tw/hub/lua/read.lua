-- KEYS: record, history (as common.lua).
-- ARGV: mode ("head", "after", "since", "earliest" or "tail"), the epoch
--       and n asked to resume after, the count (tail), age ms. "since" is
--       "after" for a process that was live up to that point: on another
--       epoch it is a reset followed by everything the new epoch kept.
-- Returns {epoch, head n, 1 when "after" cannot be resumed, then n and
-- body of each event, oldest first}. A channel without a record gets one.
local epoch, n, bytes, first = record()
local age = tonumber(ARGV[5])
-- A channel someone follows keeps its record.
redis.call('PEXPIRE', meta, 2 * (age + 1000))
local out = {epoch, n, 0}
local mode = ARGV[1]
if mode == 'head' then
  return out
end
local cutoff = now - age
local entries
if mode == 'since' and ARGV[2] ~= epoch then
  out[3] = 1
  mode = 'earliest'
elseif mode == 'since' then
  mode = 'after'
end
if mode == 'after' then
  local after = tonumber(ARGV[3])
  if ARGV[2] ~= epoch or after > n or after + 1 < first then
    out[3] = 1
    return out
  end
  entries = redis.call('XRANGE', stream, '(' .. after .. '-0', '+')
  if #entries > 0 and tonumber(entries[1][2][4]) <= cutoff then
    -- Its next event is older than the age: evicted, if not yet trimmed.
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
  if tonumber(entry[2][4]) > cutoff then
    out[#out + 1] = n_of(entry[1])
    out[#out + 1] = entry[2][2]
  end
end
return out
