-- Reads what folding needs for many users in one round trip: sequence number, which event ids were already
-- applied, the open groups, and which notifications hold the application ids that reads and deletes name.
-- KEYS, per user: seq, seen, aliases, then that user's group keys.
-- ARGV[1]: JSON list, per user: [number of group keys, [event ids], [referenced ids]].
-- Reply, per user: {seq, {score or nil per event id}, {group state or nil per group key},
--                   {notification id or nil per referenced id}}.
local spec = cjson.decode(ARGV[1])
local reply = {}
local k = 1
for i, user in ipairs(spec) do
  local group_count = user[1]
  local event_ids = user[2]
  local referenced = user[3]
  local seq = redis.call('GET', KEYS[k]) or '0'
  local seen = {}
  if #event_ids > 0 then
    seen = redis.call('ZMSCORE', KEYS[k + 1], unpack(event_ids))
  end
  local groups = {}
  if group_count > 0 then
    local group_keys = {}
    for j = 1, group_count do
      group_keys[j] = KEYS[k + 2 + j]
    end
    groups = redis.call('MGET', unpack(group_keys))
  end
  local aliases = {}
  if #referenced > 0 then
    aliases = redis.call('HMGET', KEYS[k + 2], unpack(referenced))
  end
  reply[i] = {seq, seen, groups, aliases}
  k = k + 3 + group_count
end
return reply
