-- Shared by publish and replay: ARGV[2] is always the history age in ms.
local cutoff = now - tonumber(ARGV[2])
-- What a channel without a record may have held is older than the cutoff.
local unrecorded = fmt(math.max(cutoff, 0), 0)
-- The newest id a channel's history no longer holds. A record ("meta")
-- outlives its stream: a stream gone while its record says it held newer
-- events than the cutoff was lost (evicted by Redis, deleted), so all it
-- held counts as evicted.
local function evicted_of(stream, meta)
  local evicted = redis.call('HGET', meta, 'evicted')
  if not evicted then
    return unrecorded
  end
  if redis.call('EXISTS', stream) == 0 then
    local newest = redis.call('HGET', meta, 'newest')
    if newest and later(newest, evicted) then
      return newest
    end
  end
  return evicted
end
