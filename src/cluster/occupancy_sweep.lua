-- A dead node's hold on one channel or user: removes the node (ARGV[1]) from its node set (KEYS[1]);
-- returns 1 when that left it with no node (its vacated/offline is then sent by the survivor that
-- swept, once: a second sweeper finds the node gone and gets 0). occupancy.rs runs it for each name
-- of the dead node's set, then deletes the set.
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 and redis.call('SCARD', KEYS[1]) == 0 then
  return 1
end
return 0
