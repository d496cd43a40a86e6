-- Applies one user's batch change atomically, guarded by the user's sequence number (compare-and-set).
-- KEYS: 1 seq, 2 seen, 3 inbox, 4 bodies, 5 unread, 6 prefs, then the group and outbox keys the ops refer to.
-- ARGV: 1 expected seq, 2 ops as JSON (numbers as strings, bodies pre-encoded, so cjson never re-encodes them).
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current ~= tonumber(ARGV[1]) then
  return 0
end
local ops = cjson.decode(ARGV[2])
redis.call('SET', KEYS[1], ops.seq)

local now = tonumber(ops.now)
for _, event_id in ipairs(ops.seen) do
  redis.call('ZADD', KEYS[2], now, event_id)
end
if #ops.seen > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - tonumber(ops.horizon))
  redis.call('PEXPIRE', KEYS[2], ops.horizon)
end

for _, group in ipairs(ops.groups) do
  redis.call('SET', KEYS[tonumber(group[1])], group[2], 'PX', group[3])
end

for _, note in ipairs(ops.notes) do
  redis.call('HSET', KEYS[4], note[1], note[3])
  redis.call('ZADD', KEYS[3], note[2], note[1])
  redis.call('SADD', KEYS[5], note[1])
end

for _, id in ipairs(ops.read) do
  redis.call('SREM', KEYS[5], id)
end
for _, id in ipairs(ops.deleted) do
  redis.call('ZREM', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
  redis.call('SREM', KEYS[5], id)
end
if ops.prefs ~= cjson.null and ops.prefs ~= nil then
  redis.call('SET', KEYS[6], ops.prefs)
end

-- Keep the inbox bounded: the oldest notifications fall off, with their bodies and unread marks.
local size = redis.call('ZCARD', KEYS[3])
local cap = tonumber(ops.cap)
if size > cap then
  local stale = redis.call('ZRANGE', KEYS[3], 0, size - cap - 1)
  for _, id in ipairs(stale) do
    redis.call('ZREM', KEYS[3], id)
    redis.call('HDEL', KEYS[4], id)
    redis.call('SREM', KEYS[5], id)
  end
end

for _, entry in ipairs(ops.outbox) do
  redis.call('XADD', KEYS[tonumber(entry[1])], '*', 'id', entry[2], 'u', entry[3], 'd', entry[4])
end
return 1
