-- Reads what folding needs for many users in one round trip: sequence number, which event ids were already
-- applied, the open groups, and which notifications hold the application ids that reads and deletes name.
-- KEYS, per user: seq, seen, aliases, then that user's group keys.
-- ARGV[1]: JSON list, per user: [number of group keys, [event ids], [referenced ids]].
-- Reply, per user: {seq, {score or nil per event id}, {group state or nil per group key},
--                   {notification id or nil per referenced id}}.
local spec = cjson.decode(ARGV[1])

-- unpack() of more than about 8000 values fails ("too many results to unpack", Lua's C stack), and one user's
-- batch may name more (reads naming many ids): long argument lists go to Redis in slices.
local SLICE = 4000
local function call_slice(command, key, args, first, last)
  if key then
    return redis.call(command, key, unpack(args, first, last))
  end
  return redis.call(command, unpack(args, first, last))
end

-- `command [key] args...`, one reply entry per arg (key is nil for MGET).
local function sliced(command, key, args)
  if #args <= SLICE then
    return call_slice(command, key, args, 1, #args)
  end
  local out = {}
  for first = 1, #args, SLICE do
    local part = call_slice(command, key, args, first, math.min(first + SLICE - 1, #args))
    for j = 1, #part do
      out[#out + 1] = part[j]
    end
  end
  return out
end

local reply = {}
local k = 1
for i, user in ipairs(spec) do
  local group_count = user[1]
  local event_ids = user[2]
  local referenced = user[3]
  local seq = redis.call('GET', KEYS[k]) or '0'
  local seen = {}
  if #event_ids > 0 then
    seen = sliced('ZMSCORE', KEYS[k + 1], event_ids)
  end
  local groups = {}
  if group_count > 0 then
    local group_keys = {}
    for j = 1, group_count do
      group_keys[j] = KEYS[k + 2 + j]
    end
    groups = sliced('MGET', nil, group_keys)
  end
  local aliases = {}
  if #referenced > 0 then
    aliases = sliced('HMGET', KEYS[k + 2], referenced)
  end
  reply[i] = {seq, seen, groups, aliases}
  k = k + 3 + group_count
end
return reply
