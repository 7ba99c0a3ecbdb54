-- Ferrocast publish script (PROTOCOL.md part B). One atomic call per message, so a message is in
-- the history before any edge can see it live.
--
-- KEYS[1]  history stream      P:{T}
-- KEYS[2]  stream epoch        P:{T}:epoch
-- KEYS[3]  live channel        P:{T}:live   (declared so Redis Cluster refuses a cross-slot call)
-- KEYS[4]  optional idempotency key P:{T}:id:<message id>, given when the publisher chose the
--          message id: a second publish with the same id (a re-run job) returns the first one's
--          offset and publishes nothing. It lives as long as the history.
-- ARGV[1]  envelope (MessagePack)
-- ARGV[2]  history length (approximate cap, MAXLEN ~)
-- ARGV[3]  history TTL in milliseconds
-- ARGV[4]  publish command: PUBLISH, or SPUBLISH against a Redis Cluster
--
-- The epoch is the id of the first entry of this incarnation of the stream. When Redis loses the
-- stream (flush, restart without persistence, expiry) the epoch changes with it, which is how a
-- resuming client learns that history is gone even though stream ids restart from the clock.
--
-- Live message: "<entry id> <epoch> <envelope>". Returns {entry id, epoch}.
if KEYS[4] then
  local seen = redis.call('GET', KEYS[4])
  if seen then
    local space = string.find(seen, ' ', 1, true)
    return {string.sub(seen, 1, space - 1), string.sub(seen, space + 1)}
  end
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[1])
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = id
  redis.call('SET', KEYS[2], epoch)
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if KEYS[4] then
  redis.call('SET', KEYS[4], id .. ' ' .. epoch, 'PX', ARGV[3])
end
redis.call(ARGV[4], KEYS[3], id .. ' ' .. epoch .. ' ' .. ARGV[1])
return {id, epoch}
