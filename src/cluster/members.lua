-- Removes every member field node ARGV[1] wrote: for each channel in KEYS[1] (the node's channel set),
-- deletes the fields of `gateway:ch:<channel>:members` that start with "<node>\n", then the set itself.
-- ARGV[2] and ARGV[3] are the member key's prefix and suffix (see keys.rs). Returns the fields deleted.
local prefix = ARGV[1] .. "\n"
local deleted = 0
for _, channel in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[2] .. channel .. ARGV[3]
  for _, field in ipairs(redis.call('HKEYS', key)) do
    if string.sub(field, 1, #prefix) == prefix then
      deleted = deleted + redis.call('HDEL', key, field)
    end
  end
end
redis.call('DEL', KEYS[1])
return deleted
