-- A function library's top level runs with no standard library (only ``redis``), so
-- it uses none: ``handle`` binds these at its first call.
local INF = 1 / 0
local floor, frexp, ldexp, format, match, pack, unpack_state, sub
-- The server's time of this call in whole milliseconds (TIME, rounded down), or false
-- when the caller gave the time: keys then expire at an instant (SET's PXAT and
-- PEXPIREAT, which Redis replicates as they are) rather than after a duration (PX and
-- PEXPIRE, which it rewrites).
local server_ms = false
-- The largest magnitude below which every integer is a double ('%d' prints it exactly).
local EXACT = 9007199254740992
-- No withdrawals (shared, never changed).
local NONE = {}
-- The command that gives a log the expiry that SET's option gives its state.
local EXPIRE_OF = {PXAT = 'PEXPIREAT', PX = 'PEXPIRE'}

-- The numbers of texts read before (a call's parameters mostly repeat: its cost, rates,
-- limits and windows), so that each is parsed once (strtod is most of a parse's cost):
-- at most PARSED_MAX of them, then the memo starts again.
local PARSED_MAX = 4096
local parsed, parsed_count = {}, 0

-- The number a text of string.format('%.17g', x) (see fmt) stands for.
local function parse(text)
  if text == 'inf' then return INF end
  if text == '-inf' then return -INF end
  return tonumber(text)
end

-- parse, memoized: for a call's parameters, not for what changes at every call.
local function num(text)
  local x = parsed[text]
  if x then return x end
  x = parse(text)
  if x and parsed_count < PARSED_MAX then
    parsed[text], parsed_count = x, parsed_count + 1
  elseif x then
    parsed, parsed_count = {[text] = x}, 1
  end
  return x
end

-- The text of string.format('%.17g', x); integers below 2^53 are the same digits, which
-- '%d' prints faster.
local function fmt(x)
  if x % 1 == 0 and x ~= 0 and x < EXACT and x > -EXACT then return format('%d', x) end
  if x == INF then return 'inf' end
  if x == -INF then return '-inf' end
  return format('%.17g', x)
end

-- math.nextafter(x, inf)
local function up(x)
  if x ~= x or x == INF then return x end
  if x == -INF then return -1.7976931348623157e308 end
  if x == 0 then return ldexp(1, -1074) end
  local m, e = frexp(x)
  local step = e - 53
  if m == -0.5 then step = e - 54 end
  if step < -1074 then step = -1074 end
  return x + ldexp(1, step)
end

-- math.nextafter(x, -inf)
local function down(x)
  return -up(-x)
end

-- _limiter.exact_delay
local function exact_delay(now, estimate, granted_at)
  local at
  if estimate > now then at = estimate else at = up(now) end
  local found = false
  for _ = 1, 8 do
    if granted_at(at) then
      found = true
      break
    end
    at = up(at)
  end
  if not found then
    local step = up(math.abs(at)) - math.abs(at)
    while not granted_at(at) do
      at = at + step
      step = step * 2
    end
  end
  local delay = at - now
  while not granted_at(now + delay) do delay = up(delay) end
  return delay
end

-- A bucket's or a fixed window's state is one string: its numbers packed as doubles
-- (``kind.packing``: exact, and read back without parsing text), then the withdrawals'
-- text, if any.  ``raw`` is the reply of GET, if the caller has it.  The reply is as
-- HMGET's was: {withdrawals, number, ...}, with no numbers if there is no state.
local function read_packed(m, raw)
  local kind = m.kind
  if raw == nil then raw = redis.pcall('GET', m.key) end
  if raw == false then return {} end
  if type(raw) == 'string' then
    local h = {unpack_state(kind.packing, raw)}
    local after = h[kind.fields + 1]
    h[kind.fields + 1] = nil
    table.insert(h, 1, sub(raw, after))
    return h
  end
  -- Not a string: a hash as an earlier version wrote it (numbers as text in named
  -- fields), which SET replaces at the next write; any other type is an error.
  if not match(raw.err, '^WRONGTYPE') then error(raw) end
  local h = redis.call('HMGET', m.key, 'w', unpack(kind.legacy))
  if h[2] then
    for i = 2, kind.fields + 1 do h[i] = parse(h[i]) end
  else
    h = {h[1]}
  end
  return h
end

-- Write a bucket's or fixed window's state with its expiry (SET's option, and ms).
local function write_packed(m, w, option, ms)
  local kind = m.kind
  local packed = pack(kind.packing, unpack(kind.state(m)))
  redis.call('SET', m.key, packed .. (w or ''), option, ms)
end

-- TokenBucket ------------------------------------------------------------------------
local TB = {size = 5, packing = '<dd', fields = 2, legacy = {'l', 's'}}
function TB.init(m, per_second, capacity)
  m.per_second, m.capacity = per_second, capacity
end
TB.read, TB.write = read_packed, write_packed
function TB.load(m, h, now)
  if h[2] then m.level, m.stamp = h[2], h[3] else m.level, m.stamp = m.capacity, now end
end
function TB.level(m, now) -- _level_locked
  local level = m.level + (now - m.stamp) * m.per_second
  return math.min(level, m.capacity)
end
function TB.try(m, cost, now) -- try_acquire
  local level = m.level + (now - m.stamp) * m.per_second
  if level > m.capacity then level = m.capacity end
  if level >= cost then
    m.level = level - cost
    m.stamp = now
    m.dirty = true
    return true
  end
  return false
end
function TB.delay(m, cost, now) -- _delay_locked
  local level, stamp, per_second = m.level, m.stamp, m.per_second
  if math.min(level + (now - stamp) * per_second, m.capacity) >= cost then return 0 end
  return exact_delay(now, stamp + (cost - level) / per_second, function(when)
    return level + (when - stamp) * per_second >= cost
  end)
end
function TB.take(m, cost, now, at) -- _take_locked
  local level, stamp = m.level, m.stamp
  if at >= m.stamp then
    m.level = TB.level(m, at) - cost
    m.stamp = at
  else
    m.level = m.level - cost
  end
  m.dirty = true
  return {at, m.level, m.stamp, level, stamp}
end
function TB.available(m, cost, now) -- _available_locked
  return m.level + (now - m.stamp) * m.per_second >= cost
end
function TB.grant(m, cost, now) -- _grant_locked
  m.level = TB.level(m, now) - cost
  m.stamp = now
  m.dirty = true
end
function TB.state(m)
  return {m.level, m.stamp}
end
function TB.undo(m, e)
  m.level, m.stamp = e[4], e[5]
  m.dirty = true
end
function TB.rest(m, now)
  return m.stamp + (m.capacity - m.level) / m.per_second
end

-- LeakyBucket (DripBase) -------------------------------------------------------------
local LB = {size = 3, packing = '<d', fields = 1, legacy = {'t'}}
function LB.init(m, per_second, capacity)
  m.per_second, m.capacity = per_second, capacity
end
LB.read, LB.write = read_packed, write_packed
function LB.load(m, h, now)
  if h[2] then m.tat = h[2] else m.tat = -INF end
end
function LB.level(m, now)
  return m.capacity - math.max(m.tat - now, 0) * m.per_second
end
function LB.try(m, cost, now)
  if now >= m.tat then
    m.tat = now + cost / m.per_second
    m.dirty = true
    return true
  end
  return false
end
function LB.delay(m, cost, now)
  local tat = m.tat
  if now >= tat then return 0 end
  return exact_delay(now, tat, function(when) return when >= tat end)
end
function LB.take(m, cost, now, at)
  local before = m.tat
  m.tat = math.max(at, before) + cost / m.per_second
  m.dirty = true
  return {at, m.tat, before}
end
function LB.available(m, cost, now)
  return now >= m.tat
end
function LB.grant(m, cost, now)
  m.tat = now + cost / m.per_second
  m.dirty = true
end
function LB.state(m)
  return {m.tat}
end
function LB.undo(m, e)
  m.tat = e[3]
  m.dirty = true
end
function LB.rest(m, now)
  return m.tat
end

-- FixedWindow ------------------------------------------------------------------------
local FW = {size = 7, packing = '<ddd', fields = 3, legacy = {'e', 'u', 'x'}}
function FW.init(m, limit, window)
  m.limit, m.window = limit, window
end
FW.read, FW.write = read_packed, write_packed
function FW.load(m, h, now)
  if h[2] then
    m.fend, m.used, m.last = h[2], h[3], h[4]
  else
    m.fend, m.used, m.last = -INF, 0, -INF
  end
end
local function window_end(window, when) -- _window_end
  local index = floor(when / window)
  local fend = (index + 1) * window
  while floor(fend / window) <= index do fend = up(fend) end
  while floor(down(fend) / window) > index do fend = down(fend) end
  return fend
end
function FW.level(m, now)
  if now >= m.fend then return m.limit end
  return m.limit - m.used
end
function FW.try(m, cost, now)
  if now < m.fend then
    if m.used + cost <= m.limit and now >= m.last then
      m.used = m.used + cost
      m.last = now
      m.dirty = true
      return true
    end
    return false
  end
  m.fend = window_end(m.window, now)
  m.used = cost
  m.last = now
  m.dirty = true
  return true
end
function FW.delay(m, cost, now)
  local last, fend, full = m.last, m.fend, m.used + cost > m.limit
  local function granted_at(when)
    return when >= last and (when >= fend or not full)
  end
  if granted_at(now) then return 0 end
  local estimate = last
  if full then estimate = math.max(last, fend) end
  return exact_delay(now, estimate, granted_at)
end
function FW.take(m, cost, now, at)
  local fend, used, last = m.fend, m.used, m.last
  if at >= m.fend then
    m.fend = window_end(m.window, at)
    m.used = cost
  else
    m.used = m.used + cost
  end
  m.last = math.max(m.last, at)
  m.dirty = true
  return {at, m.fend, m.used, m.last, fend, used, last}
end
function FW.available(m, cost, now)
  return now >= m.last and (now >= m.fend or m.used + cost <= m.limit)
end
function FW.grant(m, cost, now)
  if now >= m.fend then
    m.fend = window_end(m.window, now)
    m.used = cost
  else
    m.used = m.used + cost
  end
  m.last = now
  m.dirty = true
end
function FW.state(m)
  return {m.fend, m.used, m.last}
end
function FW.undo(m, e)
  m.fend, m.used, m.last = e[5], e[6], e[7]
  m.dirty = true
end
function FW.rest(m, now)
  return m.fend
end

-- SlidingWindow ----------------------------------------------------------------------
-- The log (a list) holds the entries from the Python log's head on (those before it are
-- only counted, in ``head``), oldest first, each its instant and running total packed as
-- two doubles (ENTRY); before them it may hold up to DEAD - 1 entries that have left the
-- window, not yet removed.  The state (a string, as the buckets') packs the head, base,
-- running total, epoch, version, the log's size and its dead entries, then, if the log
-- is not empty, its first and last entries, so that most calls read nothing of the log
-- itself; then the withdrawals.  Entries read or written are kept in ``m.cache`` by their
-- place among the entries in the window (from 1): {instant, running total}.
local SW = {size = 7}
local DEAD = 32
local SW_STATE, SW_ENDS, ENTRY = '<ddddddd', '<dddd', '<dd'

-- RPUSH *items* to *key*, 1024 at a time (unpack passes a few thousand at most).
local function push_all(key, items)
  for first = 1, #items, 1024 do
    redis.call('RPUSH', key, unpack(items, first, math.min(first + 1023, #items)))
  end
end

-- An earlier version's log, a sorted set of "instant running-total" texts in the same
-- order, rewritten as a list (without an expiry: the state's next write sets it); its
-- size.
local function relist(m)
  local texts = redis.call('ZRANGE', m.lk, 0, -1)
  redis.call('DEL', m.lk)
  local entries = {}
  for index, text in ipairs(texts) do
    local t, c = match(text, '^(%S+) (%S+)$')
    entries[index] = pack(ENTRY, parse(t), parse(c))
  end
  push_all(m.lk, entries)
  m.dirty = true
  return #texts
end
function SW.init(m, limit, window)
  m.limit, m.window = limit, window
end
function SW.read(m, raw)
  if raw == nil then raw = redis.pcall('GET', m.key) end
  if raw == false then return {} end
  if type(raw) == 'string' then
    local h = {unpack_state(SW_STATE, raw)}
    local after = h[8]
    if h[6] > 0 then
      h[8], h[9], h[10], h[11], after = unpack_state(SW_ENDS, raw, after)
    else
      h[8] = nil
    end
    table.insert(h, 1, sub(raw, after))
    h.packed = true
    return h
  end
  -- A hash, as earlier versions wrote it (which SET replaces at the next write).
  if not match(raw.err, '^WRONGTYPE') then error(raw) end
  return redis.call('HMGET', m.key, 'w', 'S', 'T')
end
function SW.load(m, h, now)
  m.cache = {}
  if h.packed then
    m.head, m.base, m.total, m.epoch, m.version, m.n, m.dead = h[2], h[3], h[4], h[5], h[6],
                                                               h[7], h[8]
    if m.n > 0 then
      m.cache[1] = {h[9], h[10]}
      m.cache[m.n] = {h[11], h[12]}
    end
    return
  end
  if h[2] and not h[3] then -- the log's summary as text, in 'S'
    local head, base, total, epoch, version, n, dead, f, F, L, C = match(h[2],
      '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')
    m.head, m.base, m.total = parse(head), parse(base), parse(total)
    m.epoch, m.version = parse(epoch), parse(version)
    n = tonumber(n)
    m.n, m.dead = n, tonumber(dead)
    if n > 0 then
      m.cache[1] = {parse(f), parse(F)}
      m.cache[n] = {parse(L), parse(C)}
    end
    relist(m)
    return
  end
  -- A state as the earliest version wrote it (the head, base, total, epoch and version
  -- in 'h', 'b', 'T', 'E' and 'V', and no summary of the log): count the log.
  m.dead = 0
  if h[3] then
    local old = redis.call('HMGET', m.key, 'h', 'b', 'E', 'V')
    m.head, m.base, m.total = parse(old[1]), parse(old[2]), parse(h[3])
    m.epoch, m.version = parse(old[3]), parse(old[4])
    m.n = relist(m)
    return
  end
  -- No state: a fresh window.  A log left without its state (the state evicted, say)
  -- is stale, and goes.
  m.head, m.base, m.total, m.epoch, m.version, m.n = 0, 0, 0, 0, 0, 0
  redis.call('DEL', m.lk)
end
local function record(m, i) -- the i-th entry of the log, from 1
  local cached = m.cache[i]
  if cached then return cached end
  cached = {unpack_state(ENTRY, redis.call('LINDEX', m.lk, m.dead + i - 1))}
  cached[3] = nil -- the position after them
  m.cache[i] = cached
  return cached
end
local function entry(m, i)
  local e = record(m, i)
  return e[1], e[2]
end
function SW.write(m, w, option, ms)
  local n = m.n
  if n == 0 and m.dead > 0 then
    redis.call('DEL', m.lk)
    m.dead = 0
  end
  local s = pack(SW_STATE, m.head, m.base, m.total, m.epoch, m.version, n, m.dead)
  if n > 0 then
    local first, last = record(m, 1), record(m, n)
    s = s .. pack(SW_ENDS, first[1], first[2], last[1], last[2])
  end
  redis.call('SET', m.key, s .. (w or ''), option, ms)
  if n > 0 then
    redis.call(EXPIRE_OF[option], m.lk, ms)
  end
end
local function last_instant(m)
  if m.n == 0 then return -INF end
  local t = entry(m, m.n)
  return t
end
local function count_until(m, edge) -- entries at or before edge (the instants increase)
  local n = m.n
  if n == 0 or entry(m, 1) > edge then return 0 end
  if entry(m, n) <= edge then return n end
  local low, high = 1, n -- entry low is at or before the edge, entry high after it
  while high - low > 1 do
    local middle = floor((low + high) / 2)
    if entry(m, middle) <= edge then low = middle else high = middle end
  end
  return low
end
local function add(m, t, c) -- the new entry
  redis.call('RPUSH', m.lk, pack(ENTRY, t, c))
  return {t, c}
end
local function sw_expire(m, now) -- _expire
  local n = m.n
  if n == 0 then return end
  -- k: how many entries are at or before the edge (the instants increase).
  local edge = now - m.window
  if entry(m, 1) > edge then return end
  local k = 1
  if n > 1 and entry(m, 2) <= edge then k = count_until(m, edge) end
  m.dirty = true
  if k == n then
    redis.call('DEL', m.lk)
    m.n, m.cache, m.dead = 0, {}, 0
    m.head, m.base, m.total = 0, 0, 0
    m.epoch = m.epoch + 1
    return
  end
  local size = m.head + n
  local gone, first, last = record(m, k), record(m, k + 1), record(m, n)
  m.base = gone[2]
  -- The entries that left are removed in batches.
  local dead = m.dead + k
  if dead >= DEAD then
    redis.call('LTRIM', m.lk, dead, -1)
    dead = 0
  end
  m.dead = dead
  m.n = n - k
  m.cache = {first}
  m.cache[m.n] = last
  m.head = m.head + k
  if m.head >= 32 and 2 * m.head >= size then
    local base = m.base
    local kept = redis.call('LRANGE', m.lk, m.dead, -1)
    redis.call('DEL', m.lk)
    m.dead = 0
    local total = 0
    m.cache = {}
    for index, packed in ipairs(kept) do
      local t, c = unpack_state(ENTRY, packed)
      c = c - base
      m.cache[index] = {t, c}
      total = c
      kept[index] = pack(ENTRY, t, c)
    end
    push_all(m.lk, kept)
    m.total = total
    m.head, m.base = 0, 0
    m.epoch = m.epoch + 1
  end
end
local function sw_push(m, cost, at) -- _push: returns the merged total, or false
  local total = m.total + cost
  local merged = false
  local n = m.n
  if n > 0 then
    local e = record(m, n)
    if e[1] == at then
      merged = e[2]
      redis.call('LSET', m.lk, -1, pack(ENTRY, at, total))
      m.cache[n] = {at, total}
    end
  end
  if merged == false then
    m.n = n + 1
    m.cache[n + 1] = add(m, at, total)
  end
  m.total = total
  m.version = m.version + 1
  m.dirty = true
  return merged
end
local function used_at(m, when) -- _used_at
  local j = count_until(m, when - m.window)
  local out = m.base
  if j > 0 then
    local _, c = entry(m, j)
    out = c
  end
  return m.total - out
end
local function expire_if_due(m, now)
  if m.n > 0 and entry(m, 1) <= now - m.window then sw_expire(m, now) end
end
function SW.level(m, now)
  sw_expire(m, now)
  return m.limit - (m.total - m.base)
end
function SW.try(m, cost, now)
  expire_if_due(m, now)
  local total = m.total + cost
  if total - m.base <= m.limit and last_instant(m) <= now then
    sw_push(m, cost, now)
    return true
  end
  return false
end
function SW.delay(m, cost, now)
  sw_expire(m, now)
  local limit, total = m.limit, m.total
  local last = last_instant(m)
  if now >= last and total - m.base + cost <= limit then return 0 end
  local function granted_at(when)
    return when >= last and used_at(m, when) + cost <= limit
  end
  local low, high = 1, m.n
  while low < high do
    local middle = floor((low + high) / 2)
    local _, c = entry(m, middle)
    if total - c + cost <= limit then high = middle else low = middle + 1 end
  end
  local estimate = last
  if m.n > 0 and total - m.base + cost > limit then
    local t = entry(m, low)
    estimate = math.max(last, t + m.window)
  end
  return exact_delay(now, estimate, granted_at)
end
function SW.take(m, cost, now, at)
  local epoch, version, total = m.epoch, m.version, m.total
  local merged = sw_push(m, cost, at)
  return {at, m.epoch, m.version, epoch, version, total, merged}
end
function SW.available(m, cost, now)
  expire_if_due(m, now)
  return m.total - m.base + cost <= m.limit and last_instant(m) <= now
end
function SW.grant(m, cost, now)
  sw_push(m, cost, now)
end
function SW.state(m)
  return {m.epoch, m.version}
end
function SW.undo(m, e)
  local n = m.n
  if e[7] == false then
    redis.call('RPOP', m.lk)
    m.cache[n] = nil
    m.n = n - 1
  else
    local last = record(m, n)
    redis.call('LSET', m.lk, -1, pack(ENTRY, last[1], e[7]))
    m.cache[n] = {last[1], e[7]}
  end
  m.version, m.total = e[5], e[6]
  m.dirty = true
end
function SW.rest(m, now)
  if m.n == 0 then return now end
  return last_instant(m) + m.window
end

local KINDS = {tb = TB, lb = LB, fw = FW, sw = SW}

-- Bookings: encoded as numbers joined by ',' ('n' for none); lists of them by ';'.
local function encode(kind, e)
  local parts = {}
  for i = 1, kind.size do
    if e[i] == false then parts[i] = 'n' else parts[i] = fmt(e[i]) end
  end
  return table.concat(parts, ',')
end
local function decode(text)
  local e = {}
  for part in string.gmatch(text, '[^,]+') do
    if part == 'n' then e[#e + 1] = false else e[#e + 1] = parse(part) end
  end
  return e
end

-- _limiter.withdraw
local function withdraw(m, booking, now)
  local kind = m.kind
  local pending = {}
  for _, e in ipairs(m.w) do
    if e[1] >= now then pending[#pending + 1] = e end
  end
  pending[#pending + 1] = booking
  local undone = true
  while undone do
    undone = false
    local current = kind.state(m)
    for index, e in ipairs(pending) do
      local same = true
      for i = 1, #current do
        if e[1 + i] ~= current[i] then
          same = false
          break
        end
      end
      if same then
        kind.undo(m, e)
        table.remove(pending, index)
        undone = true
        break
      end
    end
  end
  m.w = pending
  m.withdrawn = true
  m.dirty = true
end

-- The i-th member: its kind and parameters from ARGV, its keys (a state, then a log,
-- which only a sliding window uses), its state as read (here, or from the caller's GET
-- reply: *read*).
local function open(KEYS, ARGV, i, now, read)
  local at = 8 + 3 * (i - 1)
  local kind = KINDS[ARGV[at + 1]]
  local m = {kind = kind, key = KEYS[2 * i - 1], dirty = false, w = NONE}
  if kind == SW then m.lk = KEYS[2 * i] end
  kind.init(m, num(ARGV[at + 2]), num(ARGV[at + 3]))
  local h = kind.read(m, read)
  local w = h[1]
  if w and w ~= '' then
    -- Withdrawals are written back with every change (none: the field stays as is).
    m.w, m.withdrawn = {}, true
    for text in string.gmatch(w, '[^;]+') do m.w[#m.w + 1] = decode(text) end
  end
  kind.load(m, h, now)
  return m
end

-- When a state *rest* seconds from being back at rest expires (then a fresh one would
-- answer the same), plus *margin* ms, as SET's option and its value: an instant (PXAT)
-- with the server's time, else a duration (PX).
local function expiry(rest, margin)
  if not (rest > 0) then rest = 0 end
  local ms = math.max(math.ceil(rest * 1000) + margin, 1)
  if server_ms then return 'PXAT', format('%d', server_ms + ms) end
  return 'PX', format('%d', ms)
end

local function save(m, now, margin)
  if not m.dirty then return end
  local kind = m.kind
  local withdrawn = nil
  if m.withdrawn then
    local texts = {}
    for index, e in ipairs(m.w) do texts[index] = encode(kind, e) end
    withdrawn = table.concat(texts, ';')
  end
  kind.write(m, withdrawn, expiry(kind.rest(m, now) - now, margin))
end

local function delay_of(members, composite, c, now)
  if not composite then return members[1].kind.delay(members[1], c, now) end
  local delay = -INF
  for _, m in ipairs(members) do delay = math.max(delay, m.kind.delay(m, c, now)) end
  return delay
end

-- One call: KEYS and ARGV as described in the module's docstring; the reply is one
-- text, its parts separated by spaces.
local function handle(KEYS, ARGV)
  if not format then
    floor, frexp, ldexp = math.floor, math.frexp, math.ldexp
    format, match, sub = string.format, string.match, string.sub
    pack, unpack_state = struct.pack, struct.unpack
  end
  local op = ARGV[1]
  local now
  if ARGV[2] == '' then
    local time = redis.call('TIME')
    local seconds, micros = num(time[1]), tonumber(time[2])
    now = seconds + micros / 1000000
    server_ms = seconds * 1000 + floor(micros / 1000)
  else
    now = parse(ARGV[2])
    server_ms = false
  end
  local cost = num(ARGV[3])
  local composite = ARGV[6] == '1'
  local margin = num(ARGV[7])

  local read = nil -- the first member's state, if read already
  if op == 'try' and not composite and ARGV[9] == 'tb' then
    -- TokenBucket.try_acquire's grant, written out: the commonest call, with no tables.
    -- A refusal, or a state with withdrawals, takes the general path below.
    local key = KEYS[1]
    read = redis.pcall('GET', key) -- as TB.read
    if read == false or (type(read) == 'string' and #read == 16) then
      local per_second, capacity = num(ARGV[10]), num(ARGV[11])
      local level = capacity
      if read then
        local stamp
        level, stamp = unpack_state('<dd', read)
        level = level + (now - stamp) * per_second
      end
      if level > capacity then level = capacity end
      if level >= cost then
        level = level - cost
        local rest = (now + (capacity - level) / per_second) - now -- as TB.rest, then save
        redis.call('SET', key, pack('<dd', level, now), expiry(rest, margin))
        return '1'
      end
    end
  elseif op == 'try' and not composite and ARGV[9] == 'fw' then
    -- FixedWindow.try_acquire's grant, written out likewise.
    local key = KEYS[1]
    read = redis.pcall('GET', key) -- as FW.read
    if read == false or (type(read) == 'string' and #read == 24) then
      local fend, used, last = -INF, 0, -INF
      if read then fend, used, last = unpack_state('<ddd', read) end
      local granted = true
      if now < fend then
        if used + cost <= num(ARGV[10]) and now >= last then
          used = used + cost
        else
          granted = false
        end
      else
        fend = window_end(num(ARGV[11]), now)
        used = cost
      end
      if granted then
        local packed = pack('<ddd', fend, used, now)
        redis.call('SET', key, packed, expiry(fend - now, margin))
        return '1'
      end
    end
  elseif op == 'try' and not composite and ARGV[9] == 'lb' then
    -- LeakyBucket.try_acquire's grant (DripBase's), written out likewise.
    local key = KEYS[1]
    read = redis.pcall('GET', key) -- as LB.read
    if read == false or (type(read) == 'string' and #read == 8) then
      local tat = -INF
      if read then tat = unpack_state('<d', read) end
      if now >= tat then
        tat = now + cost / num(ARGV[10])
        redis.call('SET', key, pack('<d', tat), expiry(tat - now, margin)) -- LB.rest, save
        return '1'
      end
    end
  elseif op == 'try' and not composite and ARGV[9] == 'sw' then
    -- SlidingWindow.try_acquire's grant, written out likewise, for a log of entries at
    -- earlier instants from which at most the first has left the window, with no
    -- compaction due.  The decision is made before anything is written, so that any
    -- other case takes the general path below as if nothing had happened here.
    local key, lk = KEYS[1], KEYS[2]
    read = redis.pcall('GET', key) -- as SW.read
    if type(read) == 'string' and #read == 88 then -- a log and no withdrawals, or ...
      local head, base, total, epoch, version, n, dead, f, F, L = unpack_state(
        '<dddddddddd', read)
      local window = num(ARGV[11])
      local edge = now - window
      local fast, remove = n > 0 and L < now, false -- ... no log and 32 bytes of them
      if fast and f <= edge then -- sw_expire, with one entry leaving
        if n < 2 then
          fast = false
        else
          local size = head + n
          local t, c = unpack_state(ENTRY, redis.call('LINDEX', lk, dead + 1))
          head = head + 1
          if t <= edge or (head >= 32 and 2 * head >= size) then
            fast = false
          else
            base, f, F = F, t, c
            dead, n = dead + 1, n - 1
            if dead >= DEAD then dead, remove = 0, dead end
          end
        end
      end
      total = total + cost -- SW.try, then sw_push
      if fast and total - base <= num(ARGV[10]) then
        if remove then redis.call('LTRIM', lk, remove, -1) end
        redis.call('RPUSH', lk, pack(ENTRY, now, total))
        local option, ms = expiry((now + window) - now, margin) -- SW.rest, then save
        local packed = pack('<ddddddddddd', head, base, total, epoch, version + 1, n + 1, dead,
          f, F, now, total)
        redis.call('SET', key, packed, option, ms)
        redis.call(EXPIRE_OF[option], lk, ms)
        return '1'
      end
    end
  end

  if op == 'try' and not composite then -- each strategy's try_acquire, then LimiterBase's
    local m = open(KEYS, ARGV, 1, now, read)
    local kind = m.kind
    local granted = kind.try(m, cost, now)
    local delay = 0
    if not granted then
      delay = kind.delay(m, cost, now)
      if delay <= 0 then
        kind.grant(m, cost, now)
        granted = true
      end
    end
    save(m, now, margin)
    if granted then return '1' end
    return '0 ' .. fmt(delay)
  end

  local count = num(ARGV[8])
  local members = {}
  for i = 1, count do members[i] = open(KEYS, ARGV, i, now) end

  if op == 'try' then -- AllOf.try_acquire
    local granted = true
    local delay = 0
    for _, m in ipairs(members) do
      if not m.kind.available(m, cost, now) then
        granted = false
        break
      end
    end
    if granted then
      for _, m in ipairs(members) do m.kind.grant(m, cost, now) end
    else
      delay = delay_of(members, composite, cost, now)
    end
    for _, m in ipairs(members) do save(m, now, margin) end
    if granted then return '1' end
    return '0 ' .. fmt(delay)
  elseif op == 'book' then -- LimiterBase._book_locked
    local limit = num(ARGV[4])
    local delay = delay_of(members, composite, cost, now)
    if delay > limit then
      for _, m in ipairs(members) do save(m, now, margin) end
      return '0 ' .. fmt(now + delay) .. ' ' .. fmt(delay)
    end
    local at = now + delay
    local tokens = {}
    for index, m in ipairs(members) do
      tokens[index] = encode(m.kind, m.kind.take(m, cost, now, at))
    end
    for _, m in ipairs(members) do save(m, now, margin) end
    return '1 ' .. fmt(at) .. ' ' .. fmt(delay) .. ' ' .. table.concat(tokens, '|')
  elseif op == 'cancel' then -- LimiterBase._give_back_locked
    local at = parse(ARGV[4])
    if at < now then return '0' end
    local index = 0
    for text in string.gmatch(ARGV[5], '[^|]+') do
      index = index + 1
      withdraw(members[index], decode(text), now)
    end
    for _, m in ipairs(members) do save(m, now, margin) end
    return '1'
  elseif op == 'level' then
    local level = INF
    for _, m in ipairs(members) do level = math.min(level, m.kind.level(m, now)) end
    for _, m in ipairs(members) do save(m, now, margin) end
    return fmt(level)
  end
  return redis.error_reply('ratekit: unknown operation ' .. tostring(op))
end
