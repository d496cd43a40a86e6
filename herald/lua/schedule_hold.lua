-- Take one outbox entry out of its stream and hold it for later, atomically (herald/schedule.py).
-- KEYS: 1 outbox stream, 2 schedule zset, 3 digest list of the user (only for kind "digest")
-- ARGV: 1 consumer group, 2 entry id, 3 kind ("defer" | "digest"), 4 due (epoch ms), 5 member or item JSON,
--       6 digest marker member, 7 digest cap
-- Returns 1 when held, 0 when the entry was no longer pending for us (another consumer settled it): holding it
-- again would deliver it twice.
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('XDEL', KEYS[1], ARGV[2])
if ARGV[3] == 'defer' then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
else
  redis.call('RPUSH', KEYS[3], ARGV[5])
  redis.call('LTRIM', KEYS[3], -tonumber(ARGV[7]), -1)
  -- NX: the first item of a period fixes when its digest leaves; later ones join it.
  redis.call('ZADD', KEYS[2], 'NX', ARGV[4], ARGV[6])
end
return 1
