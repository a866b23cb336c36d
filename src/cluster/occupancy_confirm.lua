-- The grace of a going ended: 1 when it still holds (nobody came back, the marker is still this
-- caller's), and the marker is removed; 0 when it was cancelled.
-- KEYS[1]: the marker; KEYS[2]: the set of nodes holding it. ARGV[1]: the caller's token.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  if redis.call('SCARD', KEYS[2]) == 0 then
    return 1
  end
end
return 0
