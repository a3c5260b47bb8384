-- KEYS: head, then stream and meta of each channel.
-- ARGV: epoch of the client's id, age ms, max events, mode ("after",
--       "earliest" or "tail"), the id (after) or the count (tail), and
--       "1" when a reset for an id of an older epoch is to be followed by
--       everything the current epoch kept (a process catching its own
--       streams up: it was live until its id, so it missed nothing else).
-- Returns: the epoch ("" for none yet), the newest id ("0-0"), then per
-- channel a reset flag and its entries, oldest first.
local epoch = redis.call('HGET', KEYS[1], 'epoch') or ''
local last = redis.call('HGET', KEYS[1], 'last') or '0-0'
local mode = ARGV[4]
local out = {epoch, last}
-- An id of another epoch, or newer than anything published, is unknown.
-- (A process that saw nothing yet asks with no epoch: while Redis has none
-- either, there is nothing to miss.)
local unknown = mode == 'after' and (epoch ~= ARGV[1] or later(ARGV[5], last))
if mode == 'after' and epoch == '' and not unknown then
  mode = 'none'
end
local function recent(entries)
  local kept = {}
  for _, entry in ipairs(entries) do
    if parse(entry[1]) > cutoff then
      kept[#kept + 1] = entry
    end
  end
  return kept
end
for i = 2, #KEYS, 2 do
  local reset = unknown
  local entries = {}
  if not reset then
    if mode == 'after' then
      reset = later(evicted_of(KEYS[i], KEYS[i + 1]), ARGV[5])
      if not reset then
        entries = redis.call('XRANGE', KEYS[i], '(' .. ARGV[5], '+', 'COUNT', ARGV[3])
        if #entries > 0 and parse(entries[1][1]) <= cutoff then
          reset = true
          entries = {}
        end
      end
    elseif mode == 'tail' then
      local newest = redis.call('XREVRANGE', KEYS[i], '+', '-', 'COUNT', ARGV[5])
      for j = #newest, 1, -1 do
        entries[#entries + 1] = newest[j]
      end
      entries = recent(entries)
    elseif mode == 'earliest' then
      entries = recent(redis.call('XRANGE', KEYS[i], '-', '+', 'COUNT', ARGV[3]))
    end
  end
  if unknown and ARGV[6] == '1' and epoch ~= '' and epoch ~= ARGV[1] then
    entries = recent(redis.call('XRANGE', KEYS[i], '-', '+', 'COUNT', ARGV[3]))
  end
  out[#out + 1] = reset and 1 or 0
  out[#out + 1] = entries
end
return out
