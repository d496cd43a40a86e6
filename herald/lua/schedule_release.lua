-- Move what is due from a schedule back into its outbox stream, each member once (herald/schedule.py).
-- KEYS: 1 schedule zset, 2 outbox stream
-- ARGV: 1 now (epoch ms), 2 limit, 3 digest list key prefix (the user id follows), 4 channel
-- A deferred delivery is stored as its fields (JSON: id, u, d); a digest marker is "digest|<user>": its items are
-- gathered into one entry whose delivery id names the user, channel and due time, so a retried digest keeps it.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
local released = 0
for i = 1, #due, 2 do
  local member, score = due[i], due[i + 1]
  if redis.call('ZREM', KEYS[1], member) == 1 then
    if string.sub(member, 1, 7) == 'digest|' then
      local user = string.sub(member, 8)
      local list = ARGV[3] .. user
      local items = redis.call('LRANGE', list, 0, -1)
      redis.call('DEL', list)
      if #items > 0 then
        local payload = '{"digest":{"count":' .. #items .. ',"items":[' .. table.concat(items, ',') .. ']}}'
        local id = 'digest:' .. user .. ':' .. ARGV[4] .. ':' .. score
        redis.call('XADD', KEYS[2], '*', 'id', id, 'u', user, 'd', payload)
        released = released + 1
      end
    else
      local job = cjson.decode(member)
      redis.call('XADD', KEYS[2], '*', 'id', job.id, 'u', job.u, 'd', job.d)
      released = released + 1
    end
  end
end
return released
