-- Compare-and-set of a pending action; publishes it when it leaves pending.
-- A decided action is never changed again.
-- KEYS: action key, pending set, timers zset, the client's pending set
-- ARGV: expected rev, new status, new json, decision channel, decided retention s,
--       action id, E = number of effects, publish command (PUBLISH, SPUBLISH on
--       Cluster, '' when the caller publishes after replication), then E (due ms,
--       member) pairs of effects to schedule unless already scheduled, then members of
--       timers to drop
local cur = redis.call('HMGET', KEYS[1], 'rev', 'status')
if not cur[1] or cur[1] ~= ARGV[1] or cur[2] ~= 'pending' then
  return 0
end
local rev = tonumber(cur[1]) + 1
redis.call('HSET', KEYS[1], 'rev', rev, 'status', ARGV[2], 'json', ARGV[3])
local effects_end = 9 + 2 * tonumber(ARGV[7])
for i = 9, effects_end - 1, 2 do
  redis.call('ZADD', KEYS[3], 'NX', ARGV[i], ARGV[i + 1])
end
for i = effects_end, #ARGV do
  redis.call('ZREM', KEYS[3], ARGV[i])
end
if ARGV[2] ~= 'pending' then
  redis.call('SREM', KEYS[2], ARGV[6])
  redis.call('SREM', KEYS[4], ARGV[6])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  if ARGV[8] ~= '' then
    redis.call(ARGV[8], ARGV[4], ARGV[3])
  end
end
return rev
