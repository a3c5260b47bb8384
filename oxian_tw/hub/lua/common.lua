-- Shared by every hub script (prepended to each). Ids inside Redis are
-- Stream ids "<ms>-<n>": Redis's clock in ms and one counter for every
-- channel of the current epoch.
local function parse(id)
  local ms, n = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(n)
end
local function later(a, b)
  local ams, an = parse(a)
  local bms, bn = parse(b)
  return ams > bms or (ams == bms and an > bn)
end
local function fmt(ms, n)
  return string.format('%.0f-%.0f', ms, n)
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
