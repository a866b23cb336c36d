-- Numbers, keeps and publishes one message of a stream, in one atomic step; see history.rs.
-- A user's direct message (3 keys) or a publication to a channel with history (2 keys).
-- KEYS[1] meta hash (e: epoch, s: last seq, n:<sender>: the last message id a sender appended),
-- KEYS[2] stream, KEYS[3] the user's presence hash.
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
-- Last two (both kinds): the sending process's token and the message's id, increasing per sender.
-- Returns {epoch, seq, receivers}: for a channel the nodes listening to its topic, for a user the
-- holding nodes that got it (this one included); a fourth element, 1, when the message had been
-- appended already (see below).
-- Publishing here rather than after the script is what keeps a stream's messages in seq order on
-- every node: scripts run one at a time, so numbering order is publishing order, and each node gets
-- them over its one listening connection.
--
-- A message is appended once however often it is sent: on a Redis Cluster, the client library sends
-- a whole pipeline again when a command in it was redirected (a failover, a slot's move), though the
-- commands before that one ran. A sender's messages to one stream run in id order (one pipeline part
-- per slot, in queue order), so an id at or below the sender's last one was appended already: the
-- entry carrying it (field `d`) answers what the first run did, and nothing is published again.
-- After stream_open.lua: `now`, `epoch`, `fresh`.
local from = ARGV[#ARGV - 1]
local id = tonumber(ARGV[#ARGV])
local mark = 'n:' .. from
local dedup = from .. ':' .. ARGV[#ARGV]
if not fresh then
  local last = tonumber(redis.call('HGET', KEYS[1], mark))
  if last and id <= last then
    for _, entry in ipairs(redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1024)) do
      local fields = entry[2]
      local d, s, r
      for i = 1, #fields, 2 do
        if fields[i] == 'd' then
          d = fields[i + 1]
        elseif fields[i] == 's' then
          s = fields[i + 1]
        elseif fields[i] == 'r' then
          r = fields[i + 1]
        end
      end
      if d == dedup then
        return {epoch, tonumber(s), tonumber(r or '0'), 1}
      end
    end
    -- Appended and trimmed since: nothing to add, nobody to wait for.
    return {epoch, tonumber(redis.call('HGET', KEYS[1], 's')), 0, 1}
  end
end
local seq = redis.call('HINCRBY', KEYS[1], 's', 1)
redis.call('HSET', KEYS[1], mark, ARGV[#ARGV])
local envelope = ARGV[6] .. seq .. '\n' .. epoch .. '\n' .. ARGV[1]
local receivers = 0
if #KEYS < 3 then
  receivers = redis.call(ARGV[7], ARGV[8], envelope)
else
  -- Every node holding the user: fields are node -> '<count>:<ts_ms>', live when the count is
  -- positive and the timestamp within the presence life (the rule of presence.lua and live_fields).
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
end
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], '*', 's', seq, 'f', ARGV[1], 'd', dedup, 'r', receivers)
-- Entry ids are Redis-clock milliseconds: everything older than the age goes.
redis.call('XTRIM', KEYS[2], 'MINID', tostring(now - tonumber(ARGV[3])))
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {epoch, seq, receivers}
