-- A dead node's Pusher presence members: deletes its fields in every presence channel of its channel
-- set, and returns the members left with no field on any node ({channel, member, channel, member,
-- ...}): the survivors send their member_removed. Atomic, so when several survivors sweep the same
-- node, the first gets the list and the others an empty one.
-- Also deletes the node's subscription counts (ARGV[4]: that key's suffix) in every app channel.
-- KEYS[1]: the dead node's channel set. ARGV[1]: its id; ARGV[2], ARGV[3]: the member key's prefix
-- and suffix (see keys.rs).
local prefix = ARGV[1] .. "\n"
local out = {}
for _, channel in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if string.sub(channel, 1, 1) == "\1" then
    redis.call('HDEL', ARGV[2] .. channel .. ARGV[4], ARGV[1])
  end
  if string.sub(channel, 1, 1) == "\1" and string.find(channel, "\1presence-", 2, true) then
    local key = ARGV[2] .. channel .. ARGV[3]
    for _, f in ipairs(redis.call('HKEYS', key)) do
      if string.sub(f, 1, #prefix) == prefix then
        redis.call('HDEL', key, f)
        local member = string.sub(f, #prefix + 1)
        local suffix = "\n" .. member
        local remains = false
        for _, g in ipairs(redis.call('HKEYS', key)) do
          if string.sub(g, -#suffix) == suffix then
            remains = true
            break
          end
        end
        if not remains then
          table.insert(out, channel)
          table.insert(out, member)
        end
      end
    end
  end
end
return out
