-- Removes the member fields node ARGV[1] wrote in one channel's member hash (KEYS[1]): the fields
-- that start with "<node>\n". Returns the fields deleted. members.rs runs it for each channel of the
-- node's channel set, then deletes the set.
local prefix = ARGV[1] .. "\n"
local deleted = 0
for _, field in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(field, 1, #prefix) == prefix then
    deleted = deleted + redis.call('HDEL', KEYS[1], field)
  end
end
return deleted
