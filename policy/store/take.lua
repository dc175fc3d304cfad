-- Atomic grant for one plan: the Lua twin of policy/engine/bucket.py `take`.
-- Runs inside Redis, so policyd processes sharing one Redis never grant more than the buckets hold.
--
-- KEYS: the bucket hashes, shared buckets first, then each source's buckets in order.
-- ARGV: now, day, wanted, ttl_seconds, n_shared, (rate, capacity, daily_cap) per shared bucket,
--       n_sources, then per source: name, n_specs, (rate, capacity, daily_cap) per bucket.
-- A negative rate or daily_cap means "no limit". Returns {wait, source1, n1, source2, n2, ...}
-- with wait as a string ("inf" when nothing more is possible today).

local EPS = 1e-9
local now = tonumber(ARGV[1])
local day = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])

local specs = {}       -- by KEYS index: {rate, capacity, cap, tokens, stamp, used}
local function load(i, rate, capacity, cap)
  local h = redis.call('HMGET', KEYS[i], 'tokens', 'stamp', 'day', 'used')
  local s = {rate = rate, capacity = capacity, cap = cap}
  if not h[1] then
    s.tokens, s.stamp, s.used = capacity, now, 0
  else
    local tokens, stamp = tonumber(h[1]), tonumber(h[2])
    local elapsed = math.max(0, now - stamp)
    if rate < 0 then tokens = capacity else tokens = math.min(capacity, tokens + elapsed * rate) end
    s.tokens, s.stamp = tokens, math.max(now, stamp)
    if tonumber(h[3]) == day then s.used = tonumber(h[4]) else s.used = 0 end
  end
  specs[i] = s
  return s
end

local function headroom(s)
  local by_rate, by_day = math.huge, math.huge
  if s.rate >= 0 then by_rate = s.tokens end
  if s.cap >= 0 then by_day = s.cap - s.used end
  return math.min(by_rate, by_day)
end

local function available(s)
  return math.max(0, math.floor(headroom(s) + EPS))
end

local function until_one(s)
  if available(s) >= 1 then return 0 end
  if s.cap >= 0 and s.cap - s.used + EPS < 1 then return math.huge end
  if s.rate <= 0 or s.capacity < 1 then return math.huge end
  return (1 - s.tokens) / s.rate
end

local a, k = 5, 1
local n_shared = tonumber(ARGV[a]); a = a + 1
local shared = {}
for _ = 1, n_shared do
  shared[#shared + 1] = load(k, tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]))
  a, k = a + 3, k + 1
end
local n_sources = tonumber(ARGV[a]); a = a + 1
local sources = {}
for i = 1, n_sources do
  local src = {name = ARGV[a], index = i, buckets = {}, room = math.huge, used = 0}
  local n = tonumber(ARGV[a + 1]); a = a + 2
  for _ = 1, n do
    local s = load(k, tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]))
    src.buckets[#src.buckets + 1] = s
    src.room = math.min(src.room, headroom(s))
    src.used = src.used + s.used
    a, k = a + 3, k + 1
  end
  sources[i] = src
end

local shared_room = math.huge
for _, s in ipairs(shared) do shared_room = math.min(shared_room, available(s)) end
local remaining = math.min(wanted, shared_room)

local order = {}
for i = 1, #sources do order[i] = sources[i] end
table.sort(order, function(x, y)
  if x.room ~= y.room then return x.room > y.room end
  if x.used ~= y.used then return x.used < y.used end
  return x.index < y.index
end)

local out = {'0'}
for _, src in ipairs(order) do
  local granted = math.min(math.max(0, math.floor(src.room + EPS)), remaining)
  if granted > 0 then
    for _, s in ipairs(shared) do
      if s.rate >= 0 then s.tokens = s.tokens - granted end
      s.used = s.used + granted
    end
    for _, s in ipairs(src.buckets) do
      if s.rate >= 0 then s.tokens = s.tokens - granted end
      s.used = s.used + granted
    end
    remaining = remaining - granted
    out[#out + 1] = src.name
    out[#out + 1] = granted
  end
end

if #out == 1 then
  local wait_shared = 0
  for _, s in ipairs(shared) do wait_shared = math.max(wait_shared, until_one(s)) end
  local wait_src = math.huge
  for _, src in ipairs(sources) do
    local w = 0
    for _, s in ipairs(src.buckets) do w = math.max(w, until_one(s)) end
    wait_src = math.min(wait_src, w)
  end
  local wait = math.max(wait_shared, wait_src)
  if wait == math.huge then out[1] = 'inf' else out[1] = string.format('%.17g', wait) end
end

for i, s in pairs(specs) do
  redis.call('HSET', KEYS[i], 'tokens', string.format('%.17g', s.tokens), 'stamp', string.format('%.17g', s.stamp),
             'day', day, 'used', string.format('%.17g', s.used))
  redis.call('EXPIRE', KEYS[i], ttl)
end
return out
