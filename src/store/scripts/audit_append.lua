-- Appends audit entries, in order, only if the chain's head is still the one their hashes
-- were computed from (compare-and-set), then makes the last one's hash the head.
-- KEYS: audit stream, head key
-- ARGV: expected head ('' when there is none yet), maxlen (0: keep everything),
--       then (hash, entry json) pairs
-- Returns {'appended', id...}, or {'moved', current head or ''} when another writer won.
local head = redis.call('GET', KEYS[2]) or ''
if head ~= ARGV[1] then
  return {'moved', head}
end
local reply = {'appended'}
for i = 3, #ARGV, 2 do
  local id
  if ARGV[2] == '0' then
    id = redis.call('XADD', KEYS[1], '*', 'entry', ARGV[i + 1])
  else
    id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'entry', ARGV[i + 1])
  end
  reply[#reply + 1] = id
  head = ARGV[i]
end
redis.call('SET', KEYS[2], head)
return reply
