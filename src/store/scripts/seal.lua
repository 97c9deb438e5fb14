-- Seals a tally unless it is sealed (an access window's end, recorded once).
-- KEYS: tally hash
-- ARGV: seal value, ttl ms
-- Returns {1 if this call sealed it else 0, the seal that stands, the count}.
local standing = redis.call('HGET', KEYS[1], 'seal')
local sealed = 0
if not standing then
  standing = ARGV[1]
  sealed = 1
  redis.call('HSET', KEYS[1], 'seal', standing)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local count = redis.call('HGET', KEYS[1], 'count')
return {sealed, standing, tonumber(count or '0')}
