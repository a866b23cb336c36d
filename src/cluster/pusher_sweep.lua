-- A dead node's Pusher presence members in one app channel: deletes its subscription count (KEYS[2],
-- field ARGV[1]) and, for a presence channel (ARGV[2] = "1"), its fields in the member hash (KEYS[1]),
-- returning the members left with no field on any node ({member, member, ...}): the survivors send
-- their member_removed. Atomic, so when several survivors sweep the same node, the first gets the
-- list and the others an empty one. pusher_members.rs runs it for each app channel of the dead
-- node's channel set (both keys in that channel's slot).
local prefix = ARGV[1] .. "\n"
local out = {}
redis.call('HDEL', KEYS[2], ARGV[1])
if ARGV[2] ~= "1" then
  return out
end
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, #prefix) == prefix then
    redis.call('HDEL', KEYS[1], f)
    local member = string.sub(f, #prefix + 1)
    local suffix = "\n" .. member
    local remains = false
    for _, g in ipairs(redis.call('HKEYS', KEYS[1])) do
      if string.sub(g, -#suffix) == suffix then
        remains = true
        break
      end
    end
    if not remains then
      table.insert(out, member)
    end
  end
end
return out
