-- Shared by the channel scripts (prepended to each).
-- KEYS[1]: the channel's record, a hash: e (its epoch), n (its last n),
--          c (bytes of every event it ever appended, cumulated), x (when
--          its expiries were last pushed back) and, once
--          its epoch was changed for events lost in a failover, pe and pn
--          (the epoch before and the last n then).
-- KEYS[2]: its history, a stream of entries "<n>-0" with b (the event's
--          lines, without the id line), t (when it was published, ms) and
--          c (the record's c once it was appended).
-- Every key of a channel carries the channel in its hash tag: one slot.
local meta, stream = KEYS[1], KEYS[2]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- The channel's epoch, last n, cumulated bytes and when its expiries were
-- last pushed back (ms); a channel without a record gets one with a new
-- epoch (a stream without its record cannot be placed: dropped).
local function record()
  local r = redis.call('HMGET', meta, 'e', 'n', 'c', 'x')
  if r[1] then
    return r[1], tonumber(r[2]), tonumber(r[3]), tonumber(r[4]) or 0
  end
  local epoch = string.sub(redis.sha1hex(meta .. t[1] .. t[2]), 1, 10)
  redis.call('DEL', stream)
  redis.call('HSET', meta, 'e', epoch, 'n', 0, 'c', 0)
  return epoch, 0, 0, 0
end

-- How long a history outlives its last publish (ms): its expiry is pushed
-- back at most every half history age, so between 1 and 1.5 times the age
-- plus a second; the record lives twice that.
local function history_ttl(age)
  return math.floor(age * 1.5) + 1000
end

local function n_of(entry_id)
  return tonumber(string.match(entry_id, '^(%d+)'))
end
