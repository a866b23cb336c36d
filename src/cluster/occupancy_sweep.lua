-- A dead node's channels and users: removes it from each one's node set and returns the names left
-- with no node ({name, name, ...}: their vacated/offline is sent by the survivor that swept, once).
-- KEYS[1]: the dead node's set of what it held. ARGV[1]: its id; ARGV[2], ARGV[3]: the node-set
-- key's prefix and suffix.
local out = {}
for _, name in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[2] .. name .. ARGV[3]
  if redis.call('SREM', key, ARGV[1]) == 1 and redis.call('SCARD', key) == 0 then
    table.insert(out, name)
  end
end
redis.call('DEL', KEYS[1])
return out
