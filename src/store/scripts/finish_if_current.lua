-- Ends an effect timer whose work reflected revision ARGV[2]; if the action moved on
-- meanwhile, the timer is made due at once instead, so the newer state is reflected too.
-- KEYS: timers zset, action key
-- ARGV: member, rev, now ms
local rev = redis.call('HGET', KEYS[2], 'rev')
if not rev or rev == ARGV[2] then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[1])
return 0
