-- A record replaced if it holds what is expected (`IBackend.swap`).
-- KEYS[1]: the record. ARGV: the expected value, the new value, its time
-- to live in ms. Returns 1 when replaced, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
