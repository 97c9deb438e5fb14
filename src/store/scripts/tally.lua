-- Counts one more on a tally unless it is sealed (an access window's use, refused once the
-- window ended): in one script with `seal.lua`'s check, so no count lands after a seal.
-- KEYS: tally hash
-- ARGV: ttl ms
-- Returns the new count, or -1 when the tally is sealed.
if redis.call('HEXISTS', KEYS[1], 'seal') == 1 then
  return -1
end
local n = redis.call('HINCRBY', KEYS[1], 'count', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n
