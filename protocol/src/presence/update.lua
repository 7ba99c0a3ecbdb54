-- Ferrocast presence update (PROTOCOL.md part B, v1.1): one edge's joins, refreshes and leaves of
-- one room, atomically, and the removal of a bounded number of expired entries (a dead edge's
-- clients), so nobody has to clean up after an edge that was killed.
--
-- KEYS[1]  members   hash  P:{room:R}:presence        client -> "<n>:<user><n>:<node><info>"
-- KEYS[2]  expiries  zset  P:{room:R}:presence:exp    client -> expiry (Unix ms)
-- KEYS[3]  users     zset  P:{room:R}:presence:users  user   -> latest expiry of its clients
-- KEYS[4]  counts    hash  P:{room:R}:presence:count  user   -> clients present
-- ARGV[1]  now (Unix ms)   ARGV[2] expiry of the upserted (Unix ms)
-- ARGV[3]  TTL of the keys themselves (ms), so an abandoned room's keys vanish
-- ARGV[4]  most expired entries to remove     ARGV[5] number of upserts U
-- ARGV[6 .. 6+3U-1]  upserts: client, user, stored member
-- ARGV[6+3U ..]      removals: client
--
-- Returns {added clients, {removed client, user, ...}}: a client counts as added only when it
-- was not present (a refresh of a present one adds nothing), as removed only when it was.
local now, expiry = tonumber(ARGV[1]), tonumber(ARGV[2])
local added, removed = {}, {}

local function drop(client)
  local stored = redis.call('HGET', KEYS[1], client)
  redis.call('HDEL', KEYS[1], client)
  if redis.call('ZREM', KEYS[2], client) == 0 or not stored then
    return
  end
  local colon = string.find(stored, ':', 1, true)
  if not colon then
    return
  end
  local user = string.sub(stored, colon + 1, colon + tonumber(string.sub(stored, 1, colon - 1)))
  if redis.call('HINCRBY', KEYS[4], user, -1) <= 0 then
    redis.call('HDEL', KEYS[4], user)
    redis.call('ZREM', KEYS[3], user)
  end
  table.insert(removed, client)
  table.insert(removed, user)
end

local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))
for _, client in ipairs(expired) do
  drop(client)
end

local i = 6
for _ = 1, tonumber(ARGV[5]) do
  local client, user = ARGV[i], ARGV[i + 1]
  if redis.call('ZADD', KEYS[2], expiry, client) == 1 then
    redis.call('HINCRBY', KEYS[4], user, 1)
    table.insert(added, client)
  end
  -- Present or not: a refreshed token may have brought new `info`.
  redis.call('HSET', KEYS[1], client, ARGV[i + 2])
  redis.call('ZADD', KEYS[3], 'GT', expiry, user)
  i = i + 3
end
while i <= #ARGV do
  drop(ARGV[i])
  i = i + 1
end

for k = 1, 4 do
  redis.call('PEXPIRE', KEYS[k], ARGV[3])
end
return {added, removed}
