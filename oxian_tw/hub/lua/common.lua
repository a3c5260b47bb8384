-- Shared by the channel scripts (prepended to each).
-- KEYS[1]: the channel's record, a hash: e (its epoch), n (its last n),
--          b (bytes its history keeps), f (the n of its oldest kept event;
--          n + 1 when none is kept).
-- KEYS[2]: its history, a stream of entries "<n>-0" with b (the event's
--          lines, without the id line) and t (when it was published, ms).
-- Every key of a channel carries the channel in its hash tag: one slot.
local meta, stream = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- The channel's epoch, n, bytes and first kept n; a channel without a
-- record gets one, with a new epoch (whatever a stream without a record
-- held cannot be placed: dropped).
local function record()
  local r = redis.call('HMGET', meta, 'e', 'n', 'b', 'f')
  if r[1] then
    local n, f = tonumber(r[2]), tonumber(r[4])
    if f <= n and redis.call('EXISTS', stream) == 0 then
      -- Its history is gone (expired: all of it older than the age; or
      -- evicted by Redis): everything up to n counts as evicted.
      f = n + 1
      redis.call('HSET', meta, 'b', 0, 'f', f)
      return r[1], n, 0, f
    end
    return r[1], n, tonumber(r[3]), f
  end
  local epoch = string.sub(redis.sha1hex(meta .. t[1] .. t[2]), 1, 10)
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'e', epoch, 'n', 0, 'b', 0, 'f', 1)
  return epoch, 0, 0, 1
end

local function n_of(entry_id)
  return tonumber(string.match(entry_id, '^(%d+)'))
end
