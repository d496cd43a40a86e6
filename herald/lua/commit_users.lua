-- Applies the batch changes of many users; each user's change is applied whole or not at all, guarded by that
-- user's sequence number (compare-and-set), and the script as a whole is atomic.
-- KEYS, per user: seq, seen, inbox, bodies, unread, prefs, aliases, presence, then the group and outbox keys
-- its ops refer to.
-- ARGV[1]: JSON {now, horizon, cap, users: [ops...]} with numbers as strings. Bodies and group states are not
-- in it: they are ARGV entries of their own, named by index, so cjson never parses (or re-encodes) them and a
-- body shared by the inbox and the outbox is sent once. Each ops: {base = index of its first key - 1,
-- expected, seq, seen, groups, readall, read, deleted, notes, aliases, prefs, outbox, produced}; keys are named relative
-- to base. Reads and deletes are applied before the batch's new versions: the fold already decided, in event
-- order, which new versions stay unread (note[4]).
-- The live path (docs/architecture.md, "IN_APP live path"): for every applied user with a gateway in its
-- presence hash, an entry {u, from, to, unread, notes, inbox, p} goes to that gateway; at the end, one PUBLISH
-- per gateway on `live_prefix .. gateway id` with all its entries. Published inside the script, so a gateway
-- hears of a commit exactly when it is visible, and in commit order.
-- Reply: per user, 1 applied, 0 refused (stale sequence number) or 2 refused (an event id of the change is
-- already applied: the writer folded on a cached state and must load and fold again; see applier.py).
local batch = cjson.decode(ARGV[1])
local now = tonumber(batch.now)
local horizon = tonumber(batch.horizon)
local cap = tonumber(batch.cap)
local results = {}
local feeds = {}  -- gateway id -> entries (JSON texts) for it
local feed_order = {}

-- The Kafka timestamp (ms, a decimal string) of the newest event behind this user's change, or nil.
local function produced(ops)
  if ops.produced == nil or ops.produced == cjson.null then
    return nil
  end
  return ops.produced
end

-- unpack() of more than about 8000 values fails ("too many results to unpack", Lua's C stack): a user with
-- reader_max_records (up to 5000) events in one batch has twice that many ZADD arguments. Slices of 4000 keep
-- field/value and score/member pairs together.
local SLICE = 4000
local function sliced(command, key, args)
  local out = {}
  for first = 1, #args, SLICE do
    local part = redis.call(command, key, unpack(args, first, math.min(first + SLICE - 1, #args)))
    if type(part) == 'table' then
      for j = 1, #part do
        out[#out + 1] = part[j]
      end
    end
  end
  return out
end

local function apply(ops, key)
  redis.call('SET', key(1), ops.seq)

  if #ops.seen > 0 then
    local pairs_ = {}
    for i, event_id in ipairs(ops.seen) do
      pairs_[2 * i - 1] = now
      pairs_[2 * i] = event_id
    end
    sliced('ZADD', key(2), pairs_)
    -- Forgetting ids older than the horizon can wait: doing it on every 16th change keeps the set bounded
    -- for two commands fewer per change.
    if tonumber(ops.expected) == 0 or tonumber(ops.seq) % 16 < 2 then
      redis.call('ZREMRANGEBYSCORE', key(2), '-inf', now - horizon)
      redis.call('PEXPIRE', key(2), horizon)
    end
  end

  for _, group in ipairs(ops.groups) do
    redis.call('SET', key(tonumber(group[1])), ARGV[tonumber(group[2])], 'PX', group[3])
  end

  if ops.readall == '' then
    redis.call('DEL', key(5))
  elseif ops.readall ~= cjson.null and ops.readall ~= nil then
    -- Only those created up to a time: createdAt is written the same way as the cutoff, so strings compare.
    for _, id in ipairs(redis.call('SMEMBERS', key(5))) do
      local body = redis.call('HGET', key(4), id)
      if not body or cjson.decode(body).createdAt <= ops.readall then
        redis.call('SREM', key(5), id)
      end
    end
  end
  for _, id in ipairs(ops.read) do
    redis.call('SREM', key(5), id)
  end
  for _, id in ipairs(ops.deleted) do
    redis.call('ZREM', key(3), id)
    redis.call('HDEL', key(4), id)
    redis.call('SREM', key(5), id)
  end

  for _, note in ipairs(ops.notes) do
    redis.call('HSET', key(4), note[1], ARGV[tonumber(note[3])])
    redis.call('ZADD', key(3), note[2], note[1])
    if note[4] == '1' then
      redis.call('SADD', key(5), note[1])
    else
      redis.call('SREM', key(5), note[1])
    end
  end

  if #ops.aliases > 0 then
    -- The application's ids of notifications folded into groups; they live as long as applied event ids do.
    sliced('HSET', key(7), ops.aliases)
    redis.call('PEXPIRE', key(7), horizon)
  end
  if ops.prefs ~= cjson.null and ops.prefs ~= nil then
    redis.call('SET', key(6), ARGV[tonumber(ops.prefs)])
  end

  -- Keep the inbox bounded: the oldest notifications fall off, with their bodies and unread marks.
  if #ops.notes > 0 then
    local size = redis.call('ZCARD', key(3))
    if size > cap then
      local stale = redis.call('ZRANGE', key(3), 0, size - cap - 1)
      for _, id in ipairs(stale) do
        redis.call('ZREM', key(3), id)
        redis.call('HDEL', key(4), id)
        redis.call('SREM', key(5), id)
      end
    end
  end

  for _, entry in ipairs(ops.outbox) do
    if produced(ops) then
      -- The produce time rides beside the body (never in it) for the delivery actors' latency metric.
      redis.call('XADD', key(tonumber(entry[1])), '*', 'id', entry[2], 'u', entry[3], 'd', ARGV[tonumber(entry[4])],
        'p', ops.produced)
    else
      redis.call('XADD', key(tonumber(entry[1])), '*', 'id', entry[2], 'u', entry[3], 'd', ARGV[tonumber(entry[4])])
    end
  end
end

-- Never apply an event id twice, whatever the writer believed when it folded.
local function already_seen(seen_key, ids)
  for _, score in ipairs(sliced('ZMSCORE', seen_key, ids)) do
    if score then
      return true
    end
  end
  return false
end

local function push_live(ops, key)
  local presence = redis.call('HGETALL', key(8))
  if #presence == 0 then
    return
  end
  local entry
  local lapsed = {}
  for i = 1, #presence, 2 do
    local gateway, expiry = presence[i], tonumber(presence[i + 1])
    if expiry and expiry > now then
      if not entry then
        -- Bodies are already JSON texts in ARGV: spliced in, never decoded here.
        local notes = {}
        for j, index in ipairs(ops.live) do
          notes[j] = ARGV[tonumber(index)]
        end
        local inbox = 'null'
        if ops.inbox ~= cjson.null and ops.inbox ~= nil then
          inbox = ARGV[tonumber(ops.inbox)]
        end
        entry = '{"u":' .. cjson.encode(ops.user) .. ',"from":' .. ops.expected .. ',"to":' .. ops.seq
          .. ',"unread":' .. redis.call('SCARD', key(5)) .. ',"notes":[' .. table.concat(notes, ',')
          .. '],"inbox":' .. inbox .. ',"p":' .. (produced(ops) or 'null') .. '}'
      end
      local entries = feeds[gateway]
      if not entries then
        entries = {}
        feeds[gateway] = entries
        feed_order[#feed_order + 1] = gateway
      end
      entries[#entries + 1] = entry
    else
      lapsed[#lapsed + 1] = gateway
    end
  end
  if #lapsed > 0 then
    -- A gateway that stopped refreshing (it died): forget it here rather than publish to it forever.
    redis.call('HDEL', key(8), unpack(lapsed))
  end
end

for i, ops in ipairs(batch.users) do
  local base = tonumber(ops.base)
  local function key(index)
    return KEYS[base + index]
  end
  local current = tonumber(redis.call('GET', key(1)) or '0')
  if current ~= tonumber(ops.expected) then
    results[i] = 0
  elseif #ops.seen > 0 and already_seen(key(2), ops.seen) then
    results[i] = 2
  else
    apply(ops, key)
    push_live(ops, key)
    results[i] = 1
  end
end
for _, gateway in ipairs(feed_order) do
  redis.call('PUBLISH', batch.live_prefix .. gateway, '[' .. table.concat(feeds[gateway], ',') .. ']')
end
return results
