-- Records an action's Slack message state, only while the action exists.
-- KEYS: action key; ARGV: state json
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'slack', ARGV[1])
  return 1
end
return 0
