-- The start of append.lua and history_read.lua, put in front of each by history.rs (Redis scripts
-- cannot include one another): opens the stream whose meta hash is KEYS[1] (e: epoch, s: last seq)
-- and whose entries are KEYS[2]. ARGV[4] is the epoch of a stream started here.
-- Leaves `now` (Redis time, ms), `epoch`, and `fresh` (true when the stream was started here).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch = redis.call('HGET', KEYS[1], 'e')
local fresh = not epoch
if fresh then
  -- A new stream (never written, forgotten, or lost with Redis): entries of an older one are not its.
  epoch = ARGV[4]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 's', 0)
end
