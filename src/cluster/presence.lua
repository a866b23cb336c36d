-- Applies one node's presence write for one user, atomically (see src/cluster/presence.rs).
--
-- KEYS[1]  presence:<user>, a hash: field = node id, value = "<count>:<ts_ms>"
-- ARGV[1]  the writing node's id
-- ARGV[2]  its connection count for the user (0 = remove its field)
-- ARGV[3]  the write's timestamp: the writing node's wall clock, ms since the epoch
-- ARGV[4]  the TTL in ms
-- Returns 1 when the write was applied, 0 when it was stale (fenced).
--
-- Order of the steps:
--   1. prune every field older than Redis TIME - TTL (a crashed node's entry vanishes even while other
--      nodes keep the key alive), remembering the writer's own stored timestamp if it survives;
--   2. the fence: a stored timestamp newer than the write's rejects it, and so does a count > 0 whose
--      timestamp is already older than the TTL (every reader would ignore it anyway);
--   3. store "<count>:<ts>" or delete the field for count 0;
--   4. while any field remains, PEXPIRE the key by the TTL (every field is younger than that).

local key = KEYS[1]
local node = ARGV[1]
local count = tonumber(ARGV[2])
local ts = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
if not (count and ts and ttl) or count < 0 or ttl <= 0 then
  return redis.error_reply('ERR presence script: bad arguments')
end

-- The timestamp of a stored value, or nil when it is malformed.
local function ts_of(value)
  local sep = string.find(value, ':', 1, true)
  if not sep then
    return nil
  end
  return tonumber(string.sub(value, sep + 1))
end

local now = redis.call('TIME')
local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - ttl

local stored = nil
local fields = redis.call('HGETALL', key)
for i = 1, #fields, 2 do
  local field_ts = ts_of(fields[i + 1])
  if field_ts == nil or field_ts < cutoff then
    redis.call('HDEL', key, fields[i])
  elseif fields[i] == node then
    stored = field_ts
  end
end

if stored ~= nil and stored > ts then
  return 0
end
if count > 0 and ts < cutoff then
  return 0
end

if count > 0 then
  -- Built from the argument strings, not from the numbers: Lua would print 1.7e+12.
  redis.call('HSET', key, node, ARGV[2] .. ':' .. ARGV[3])
else
  redis.call('HDEL', key, node)
end
if redis.call('EXISTS', key) == 1 then
  redis.call('PEXPIRE', key, ttl)
end
return 1
