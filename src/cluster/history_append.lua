-- Numbers and keeps one direct message, and tells who holds the user; see history.rs.
-- KEYS[1] meta hash (e: epoch, s: last seq), KEYS[2] stream, KEYS[3] presence hash of the user.
-- ARGV[1] frame, ARGV[2] max entries, ARGV[3] max age (ms), ARGV[4] epoch to use if the stream is new,
-- ARGV[5] life of the meta hash after the last message (ms).
-- Returns {epoch, seq, now_ms, presence fields (flat array)}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  -- A new stream (never written, forgotten, or lost with Redis): entries of an older one are not its.
  epoch = ARGV[4]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0)
end
local seq = redis.call('HINCRBY', KEYS[1], 's', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], '*', 's', seq, 'f', ARGV[1])
-- Entry ids are Redis-clock milliseconds: everything older than the age goes.
redis.call('XTRIM', KEYS[2], 'MINID', tostring(now - tonumber(ARGV[3])))
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {epoch, seq, now, redis.call('HGETALL', KEYS[3])}
