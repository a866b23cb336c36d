-- Numbers, keeps and publishes one message of a stream, in one atomic step; see history.rs.
-- A user's direct message (3 keys) or a publication to a channel with history (2 keys).
-- KEYS[1] meta hash (e: epoch, s: last seq), KEYS[2] stream, KEYS[3] the user's presence hash.
-- ARGV[1] frame, ARGV[2] max entries, ARGV[3] max age (ms), ARGV[4] epoch to use if the stream is new,
-- ARGV[5] life of the meta hash after the last message (ms),
-- ARGV[6] the envelope's head (up to and including the name line; '<seq>\n<epoch>\n<frame>' follows),
-- ARGV[7] 'PUBLISH' or 'SPUBLISH', ARGV[8] the channel's topic, or the node channels' prefix,
-- Users only: ARGV[9] presence life (ms): a node whose presence field is older holds nobody;
-- ARGV[10] this node's id; ARGV[11] '1' when this node holds the user (its own directory says so,
-- which Redis presence may not show yet: a connection that just identified); ARGV[12] what follows a
-- node id in its channel's name (after the prefix ARGV[8]); ARGV[13] '1' on a Redis Cluster, where
-- PUBLISH goes over the cluster bus and counts only this server's listeners: every live holder is
-- counted as a receiver (one that died unnoticed costs its sender the relay's ack wait).
-- Returns {epoch, seq, receivers}: for a channel the nodes listening to its topic, for a user the
-- holding nodes that got it (this one included).
-- Publishing here rather than after the script is what keeps a stream's messages in seq order on
-- every node: scripts run one at a time, so numbering order is publishing order, and each node gets
-- them over its one listening connection.
-- After stream_open.lua: `now`, `epoch`.
local seq = redis.call('HINCRBY', KEYS[1], 's', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], '*', 's', seq, 'f', ARGV[1])
-- Entry ids are Redis-clock milliseconds: everything older than the age goes.
redis.call('XTRIM', KEYS[2], 'MINID', tostring(now - tonumber(ARGV[3])))
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
local envelope = ARGV[6] .. seq .. '\n' .. epoch .. '\n' .. ARGV[1]
if #KEYS < 3 then
  return {epoch, seq, redis.call(ARGV[7], ARGV[8], envelope)}
end
-- Every node holding the user: fields are node -> '<count>:<ts_ms>', live when the count is positive
-- and the timestamp within the presence life (the rule of presence.lua and live_fields).
local cutoff = now - tonumber(ARGV[9])
local me = ARGV[10]
local to_me = ARGV[11] == '1'
local suffix = ARGV[12]
local broadcast = ARGV[13] == '1'
local function publish(node)
  local got = redis.call(ARGV[7], ARGV[8] .. node .. suffix, envelope)
  return got > 0 or broadcast
end
local fields = redis.call('HGETALL', KEYS[3])
local receivers = 0
for i = 1, #fields, 2 do
  local count, ts = string.match(fields[i + 1], '^(%d+):(%d+)$')
  if count and tonumber(count) > 0 and tonumber(ts) >= cutoff then
    if fields[i] == me then
      to_me = true
    elseif publish(fields[i]) then
      receivers = receivers + 1
    end
  end
end
if to_me and publish(me) then
  receivers = receivers + 1
end
return {epoch, seq, receivers}
