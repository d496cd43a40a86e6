-- Reads what folding needs for many users in one round trip: sequence number, which event ids were already
-- applied, and the open groups. KEYS, per user: seq, seen, then that user's group keys.
-- ARGV[1]: JSON list, per user: [number of group keys, [event ids]].
-- Reply, per user: {seq, {score or nil per event id}, {group state or nil per group key}}.
local spec = cjson.decode(ARGV[1])
local reply = {}
local k = 1
for i, user in ipairs(spec) do
  local group_count = user[1]
  local event_ids = user[2]
  local seq = redis.call('GET', KEYS[k]) or '0'
  local seen = {}
  if #event_ids > 0 then
    seen = redis.call('ZMSCORE', KEYS[k + 1], unpack(event_ids))
  end
  local groups = {}
  if group_count > 0 then
    local group_keys = {}
    for j = 1, group_count do
      group_keys[j] = KEYS[k + 1 + j]
    end
    groups = redis.call('MGET', unpack(group_keys))
  end
  reply[i] = {seq, seen, groups}
  k = k + 2 + group_count
end
return reply
