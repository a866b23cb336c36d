-- Reads what a resuming client missed; see history.rs.
-- KEYS[1] meta hash, KEYS[2] stream.
-- ARGV[1] the client's epoch ('' for none), ARGV[2] its last seq, ARGV[3] max age (ms),
-- ARGV[4] epoch to use if there is no stream, ARGV[5] life of the meta hash (ms), ARGV[6] max entries.
-- Returns {epoch, last seq, entries newest first: {id, {field, value, ...}}}: the entries after the
-- client's seq in its epoch, or every kept entry in another epoch.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  -- Start the stream now, so the client learns the epoch its next messages will carry.
  epoch = ARGV[4]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
local last = tonumber(redis.call('HGET', KEYS[1], 's'))
redis.call('XTRIM', KEYS[2], 'MINID', tostring(now - tonumber(ARGV[3])))
local after = 0
if ARGV[1] == epoch then
  after = tonumber(ARGV[2])
end
local want = math.min(last - after, tonumber(ARGV[6]))
local entries = {}
if want > 0 then
  entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', want)
end
return {epoch, last, entries}
