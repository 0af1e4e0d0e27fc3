-- One activation (or deactivation) in one round trip (SPEC §2, R11–R13, R16).
--
-- KEYS: 1 license hash, 2 installations zset (fingerprint -> last seen, seconds),
--       3 installation details hash (fingerprint -> "first_seen\thostname\tversion\tip"),
--       4 event stream of the license's shard, 5 per-IP counter, 6 per-key counter,
--       7 per-IP unknown-key counter. Keys 1-4 and 6 share a hash slot; 5 and 7 do too in
--       cluster mode (they carry the license's tag there, see keys.py).
-- ARGV: 1 op ("a" activate, "d" deactivate), 2 now (seconds, decimal), 3 fingerprint,
--       4 hostname, 5 version, 6 ip, 7 event id, 8 active window (s), 9 leak window (s),
--       10 limit per IP, 11 limit per key, 12 limit unknown per IP (0 = off),
--       13 seconds left in this minute, 14 fill: "" none, "-" unknown key, else the license doc,
--       15 fill status, 16 fill allowed servers, 17 negative-cache ttl (s), 18 license key
-- Returns one of
--   {"RL", retry_after_seconds, which}           rate limited, nothing recorded
--   {"MISS"}                                     not cached: load from PostgreSQL, call again with a fill
--   {"NF"}                                       unknown key (negative cache)
--   {"OK", doc, active, allowed, over_since, stage, grace_ends, disable_at, seen_recently}

local lic, inst, info, stream = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local op, now, fp = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local retry = tonumber(ARGV[13])

local function over_limit(counter_key, limit)
  if limit <= 0 then return false end
  local count = redis.call('INCR', counter_key)
  if count == 1 then redis.call('EXPIRE', counter_key, retry + 1) end
  return count > limit
end

local nf_limit = tonumber(ARGV[12])
local fill = ARGV[14]
-- A fill is the second call of one request (after a MISS): its address was counted already.
if fill == '' and over_limit(KEYS[5], tonumber(ARGV[10])) then return {'RL', retry, 'ip'} end

-- Everything the answer needs from the license hash, in one read (nothing below changes
-- these fields before the reply, except the fill and 'over', which update the copies here).
local fields = redis.call('HMGET', lic, 'doc', 'allowed', 'over', 'stage', 'grace_ends',
  'disable_at', 'purge_due')
local doc = fields[1]
if not doc then
  local known_missing = redis.call('HEXISTS', lic, 'missing') == 1
  -- Not cached: only PostgreSQL knows whether the key exists, so the unknown-key limit waits
  -- for its answer (the fill "-"); refusing here would refuse real keys whose cache is cold.
  if fill == '' and not known_missing then return {'MISS'} end
  if fill == '-' or (fill == '' and known_missing) then
    -- Counts only answers that really are NOT_FOUND.
    if fill == '-' then
      redis.call('HSET', lic, 'missing', '1')
      redis.call('EXPIRE', lic, tonumber(ARGV[17]))
    end
    if over_limit(KEYS[7], nf_limit) then return {'RL', retry, 'unknown'} end
    return {'NF'}
  end
  redis.call('HDEL', lic, 'missing')
  redis.call('PERSIST', lic)
  redis.call('HSET', lic, 'doc', fill, 'status', ARGV[15], 'allowed', ARGV[16])
  doc = fill
  fields[2] = ARGV[16]
end

if op == 'a' and over_limit(KEYS[6], tonumber(ARGV[11])) then return {'RL', retry, 'key'} end

-- Servers silent for longer than the active window are no longer active installations (R11).
-- 'purge_due' in the license hash is a lower bound of the moment the oldest installation
-- goes stale (a second early, against rounding): before it nothing can be stale, and the range
-- read is skipped (most activations: a server phones home daily, and the window, ARGV 8, is
-- ACTIVE_WINDOW_DAYS: 7 days unless configured otherwise).
local window = tonumber(ARGV[8])
local purge_due = tonumber(fields[7])
local purged = not purge_due or now >= purge_due
if purged then
  local stale = redis.call('ZRANGEBYSCORE', inst, '-inf', '(' .. (now - window), 'LIMIT', 0, 500)
  if #stale > 0 then
    redis.call('ZREM', inst, unpack(stale))
    redis.call('HDEL', info, unpack(stale))
  end
end

local hostname, version, ip = ARGV[4], ARGV[5], ARGV[6]
if op == 'a' then
  redis.call('ZADD', inst, now, fp)
  local previous = redis.call('HGET', info, fp)
  local first_seen = ARGV[2]
  if previous then first_seen = string.match(previous, '^[^\t]*') end
  local details = first_seen .. '\t' .. hostname .. '\t' .. version .. '\t' .. ip
  if details ~= previous then redis.call('HSET', info, fp, details) end
else
  redis.call('ZREM', inst, fp)
  redis.call('HDEL', info, fp)
end

if purged then
  local oldest = redis.call('ZRANGE', inst, 0, 0, 'WITHSCORES')[2]
  if oldest then
    redis.call('HSET', lic, 'purge_due', tonumber(oldest) + window - 1)
  else
    redis.call('HDEL', lic, 'purge_due')
  end
elseif op == 'a' and now + window - 1 < purge_due then
  -- A clock set back (the test clock) recorded a server older than the bound: lower it.
  redis.call('HSET', lic, 'purge_due', now + window - 1)
end

local allowed = tonumber(fields[2]) or 1
local active = redis.call('ZCARD', inst)
local over = fields[3]
-- R13: remember the moment the key first exceeded its allowed servers; the worker opens the
-- case from it. Falling back within the limit before a case exists forgets it.
if active > allowed then
  if not over then
    over = ARGV[2]
    redis.call('HSET', lic, 'over', over)
  end
elseif over and not fields[4] then
  redis.call('HDEL', lic, 'over')
  over = false
end
-- R16: distinct servers of the leak window. A key with one server, the one just recorded,
-- has seen exactly that one (most keys: this saves a command on the hot path).
local seen_recently = 1
if op ~= 'a' or active ~= 1 then
  seen_recently = redis.call('ZCOUNT', inst, now - tonumber(ARGV[9]), '+inf')
end

redis.call('XADD', stream, '*', 'id', ARGV[7], 'op', op, 'key', ARGV[18], 'fp', fp,
  'host', hostname, 'ver', version, 'ip', ip, 'at', ARGV[2], 'active', active,
  'allowed', allowed, 'recent', seen_recently)

return {'OK', doc, active, allowed, over or '', fields[4] or '', fields[5] or '',
  fields[6] or '', seen_recently}
