-- A channel's (or a user's) first subscriber (connection) on this node came, or its last went; and what
-- that is across the cluster. Used only when webhooks are configured.
-- KEYS[1]: the set of nodes holding it; KEYS[2]: its "going" marker (both in the name's slot; the
-- node's own set of what it holds is kept by occupancy.rs beside this call).
-- ARGV[1]: node id; ARGV[2]: "1" came, "0" went; ARGV[3]: the marker's life (ms); ARGV[4]: a token.
-- Returns 1: first anywhere (send occupied/online); 2: back within the grace of its going (send
-- nothing, the going is cancelled); 3: last anywhere (the caller holds the going for the grace, then
-- confirms with occupancy_confirm.lua); 0: nothing to send.
if ARGV[2] == "1" then
  if redis.call('SADD', KEYS[1], ARGV[1]) == 1 and redis.call('SCARD', KEYS[1]) == 1 then
    if redis.call('DEL', KEYS[2]) == 1 then
      return 2
    end
    return 1
  end
  return 0
end
if redis.call('SREM', KEYS[1], ARGV[1]) == 1 and redis.call('SCARD', KEYS[1]) == 0 then
  redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[3])
  return 3
end
return 0
