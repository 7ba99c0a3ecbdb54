-- Ferrocast publish script (PROTOCOL.md part B). One atomic call per message, so a message is in
-- the history before any edge can see it live.
--
-- KEYS[1]  history stream      P:{T}
-- KEYS[2]  stream epoch        P:{T}:epoch
-- KEYS[3]  live channel        P:{T}:live   (declared so Redis Cluster refuses a cross-slot call)
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
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'e', ARGV[1])
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = id
  redis.call('SET', KEYS[2], epoch)
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call(ARGV[4], KEYS[3], id .. ' ' .. epoch .. ' ' .. ARGV[1])
return {id, epoch}
