-- Ferrocast presence stats: unexpired clients and users of a room, counted without reading a
-- single member (two ZCOUNTs). KEYS as in update.lua. ARGV[1] now (Unix ms).
local since = '(' .. ARGV[1]
return {redis.call('ZCOUNT', KEYS[2], since, '+inf'), redis.call('ZCOUNT', KEYS[3], since, '+inf')}
