-- Creates an action once per (client, webhook-id), atomically; a pending one only while
-- its client has fewer than max_pending pending actions.
-- KEYS: idempotency key, action key, pending set, timers zset, the client's pending set
-- ARGV: idempotency value, idempotency ttl s, action id, status, action json,
--       decision channel, decided retention s, publish command (PUBLISH, SPUBLISH on
--       Cluster, '' when the caller publishes after replication), max pending, the
--       client's pending actions in other shards (Cluster; else 0), then (due ms, member)
--       pairs of timers
-- Returns the stored idempotency value for a repeat, 'full' when refused, else false.
local existing = redis.call('GET', KEYS[1])
if existing then
  return existing
end
local pending = ARGV[4] == 'pending'
if pending and redis.call('SCARD', KEYS[5]) + tonumber(ARGV[10]) >= tonumber(ARGV[9]) then
  return 'full'
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('HSET', KEYS[2], 'rev', 1, 'status', ARGV[4], 'json', ARGV[5])
for i = 11, #ARGV, 2 do
  redis.call('ZADD', KEYS[4], ARGV[i], ARGV[i + 1])
end
if pending then
  redis.call('SADD', KEYS[3], ARGV[3])
  redis.call('SADD', KEYS[5], ARGV[3])
else
  redis.call('EXPIRE', KEYS[2], ARGV[7])
  if ARGV[8] ~= '' then
    redis.call(ARGV[8], ARGV[6], ARGV[5])
  end
end
return false
