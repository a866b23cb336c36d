-- A Pusher presence member joins or leaves a channel from this node, and whether that is the member's
-- first join or last leave across the cluster (decided here, atomically, so exactly one node sends
-- member_added or member_removed however many nodes the member's sockets are on).
-- KEYS[1]: the channel's member hash (the node's channel set is kept by pusher_members.rs beside
-- this call).
-- ARGV[1]: node id; ARGV[2]: member; ARGV[3]: "1" join, "0" leave; ARGV[4]: user_info (join).
-- Returns 1 for a first join or a last leave, else 0.
local field = ARGV[1] .. "\n" .. ARGV[2]
local suffix = "\n" .. ARGV[2]
local function elsewhere()
  for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
    if f ~= field and #f > #suffix and string.sub(f, -#suffix) == suffix then
      return true
    end
  end
  return false
end
if ARGV[3] == "1" then
  local new = redis.call('HSET', KEYS[1], field, ARGV[4])
  if new == 0 or elsewhere() then
    return 0
  end
  return 1
end
if redis.call('HDEL', KEYS[1], field) == 0 or elsewhere() then
  return 0
end
return 1
