-- Ferrocast presence list: the room's unexpired members, unless there are more than ARGV[2].
-- KEYS as in update.lua. ARGV[1] now (Unix ms), ARGV[2] most members to return.
-- Returns {count} when over the limit, else {count, clients, stored members}.
local since = '(' .. ARGV[1]
local count = redis.call('ZCOUNT', KEYS[2], since, '+inf')
if count > tonumber(ARGV[2]) then
  return {count}
end
local clients = redis.call('ZRANGEBYSCORE', KEYS[2], since, '+inf')
local stored = {}
for i, client in ipairs(clients) do
  stored[i] = redis.call('HGET', KEYS[1], client) or ''
end
return {count, clients, stored}
