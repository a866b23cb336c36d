-- Numbers and keeps one publication to a channel with history, and publishes it in the same step;
-- see history.rs.
-- KEYS[1] meta hash (e: epoch, s: last seq), KEYS[2] stream.
-- ARGV[1] frame, ARGV[2] max entries, ARGV[3] max age (ms), ARGV[4] epoch to use if the stream is new,
-- ARGV[5] life of the meta hash after the last message (ms), ARGV[6] the channel's topic,
-- ARGV[7] 'PUBLISH' or 'SPUBLISH', ARGV[8] the envelope's head (up to and including the channel line).
-- Returns {epoch, seq, receivers}.
-- Publishing here rather than after the script is what keeps a channel's publications in seq order
-- on every node: scripts run one at a time, so numbering order is publishing order.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[4]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0)
end
local seq = redis.call('HINCRBY', KEYS[1], 's', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], '*', 's', seq, 'f', ARGV[1])
redis.call('XTRIM', KEYS[2], 'MINID', tostring(now - tonumber(ARGV[3])))
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local receivers = redis.call(ARGV[7], ARGV[6], ARGV[8] .. seq .. '\n' .. epoch .. '\n' .. ARGV[1])
return {epoch, seq, receivers}
