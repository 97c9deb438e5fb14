-- Claims due timers by pushing their score to the end of a lease: another replica sees
-- them again only if this one did not finish (ZREM) them in time.
-- KEYS: timers zset
-- ARGV: now ms, limit, lease-until ms
-- Returns a flat list of member, original due ms.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[2])
for i = 1, #due, 2 do
  redis.call('ZADD', KEYS[1], ARGV[3], due[i])
end
return due
