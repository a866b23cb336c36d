-- Reads what a resuming client missed; see history.rs.
-- KEYS[1] meta hash, KEYS[2] stream.
-- ARGV[1] the client's epoch ('' for none), ARGV[2] its last seq, ARGV[3] max age (ms),
-- ARGV[4] epoch to use if there is no stream, ARGV[5] life of the meta hash (ms), ARGV[6] max entries.
-- Returns {epoch, last seq, entries newest first: {id, {field, value, ...}}}: the entries after the
-- client's seq in its epoch, or every kept entry in another epoch.
-- After stream_open.lua: `now`, `epoch`, `fresh`.
if fresh then
  -- Started now, so the client learns the epoch its next messages will carry.
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
