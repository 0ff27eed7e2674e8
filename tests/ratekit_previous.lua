-- ratekit/stores/ratekit.lua as it was before the states of buckets and windows were
-- packed (commit 183a9be): the states it writes are those an upgrade meets.
-- A function library's top level runs with no standard library (only ``redis``), so
-- it uses none: ``handle`` binds these at its first call.
local INF = 1 / 0
local floor, frexp, ldexp, format, match
-- The server's time of this call in whole milliseconds (TIME, rounded down), or false
-- when the caller gave the time: keys then expire at an instant (PEXPIREAT, which
-- Redis runs as is) rather than after a duration (PEXPIRE, which it rewrites).
local server_ms = false
-- The largest magnitude below which every integer is a double ('%d' prints it exactly).
local EXACT = 9007199254740992
-- No withdrawals (shared, never changed).
local NONE = {}

local function num(text)
  if text == 'inf' then return INF end
  if text == '-inf' then return -INF end
  return tonumber(text)
end

-- The text of string.format('%.17g', x); integers below 2^53 are the same digits, which
-- '%d' prints faster.
local function fmt(x)
  if x % 1 == 0 and x ~= 0 and x < EXACT and x > -EXACT then return format('%d', x) end
  if x == INF then return 'inf' end
  if x == -INF then return '-inf' end
  return format('%.17g', x)
end

-- The text of x: text, which was read as old, if x is old still (the same double).
local function keep(x, old, text)
  if text and x == old and (x ~= 0 or 1 / x == 1 / old) then return text end
  return fmt(x)
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

-- TokenBucket ------------------------------------------------------------------------
local TB = {size = 5}
function TB.init(m, per_second, capacity)
  m.per_second, m.capacity = per_second, capacity
end
function TB.read(m)
  return redis.call('HMGET', m.key, 'w', 'l', 's')
end
function TB.load(m, h, now)
  if h[2] then m.level, m.stamp = num(h[2]), num(h[3]) else m.level, m.stamp = m.capacity, now end
end
function TB.write(m, w)
  if w then
    redis.call('HSET', m.key, 'l', fmt(m.level), 's', fmt(m.stamp), 'w', w)
  else
    redis.call('HSET', m.key, 'l', fmt(m.level), 's', fmt(m.stamp))
  end
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
local LB = {size = 3}
function LB.init(m, per_second, capacity)
  m.per_second, m.capacity = per_second, capacity
end
function LB.read(m)
  return redis.call('HMGET', m.key, 'w', 't')
end
function LB.load(m, h, now)
  if h[2] then m.tat = num(h[2]) else m.tat = -INF end
end
function LB.write(m, w)
  if w then
    redis.call('HSET', m.key, 't', fmt(m.tat), 'w', w)
  else
    redis.call('HSET', m.key, 't', fmt(m.tat))
  end
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
local FW = {size = 7}
function FW.init(m, limit, window)
  m.limit, m.window = limit, window
end
function FW.read(m)
  return redis.call('HMGET', m.key, 'w', 'e', 'u', 'x')
end
function FW.load(m, h, now)
  if h[2] then
    m.fend, m.used, m.last = num(h[2]), num(h[3]), num(h[4])
    m.read_fend, m.fend_text = m.fend, h[2]
  else
    m.fend, m.used, m.last = -INF, 0, -INF
  end
end
function FW.write(m, w)
  local fend = keep(m.fend, m.read_fend, m.fend_text)
  if w then
    redis.call('HSET', m.key, 'e', fend, 'u', fmt(m.used), 'x', fmt(m.last), 'w', w)
  else
    redis.call('HSET', m.key, 'e', fend, 'u', fmt(m.used), 'x', fmt(m.last))
  end
end
local function window_end(m, when) -- _window_end
  local window = m.window
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
  m.fend = window_end(m, now)
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
    m.fend = window_end(m, at)
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
    m.fend = window_end(m, now)
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
-- The log holds the entries from the Python log's head on (those before it are only
-- counted, in ``head``): score the instant, member "instant running-total"; before them
-- it may hold up to DEAD - 1 entries that have left the window, not yet removed (``p``).
-- The hash also holds the log's size and its first and last entries, so that most calls
-- read nothing of the log itself.  Entries read or written are kept in ``m.cache`` by
-- their place among the entries in the window (from 1): {instant, running total, and
-- their texts as in the log}.
local SW = {size = 7}
local DEAD = 32
function SW.init(m, limit, window)
  m.limit, m.window = limit, window
end
function SW.read(m)
  return redis.call('HMGET', m.key, 'w', 'S', 'T')
end
function SW.load(m, h, now)
  m.cache = {}
  if h[2] and not h[3] then
    local head, base, total, epoch, version, n, dead, f, F, L, C = match(h[2],
      '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')
    m.head, m.base, m.total, m.epoch, m.version = num(head), num(base), num(total), num(epoch),
                                                  num(version)
    m.base_text, m.read_head, m.head_text, m.read_epoch, m.epoch_text =
      base, m.head, head, m.epoch, epoch
    n = tonumber(n)
    m.n, m.dead, m.marked = n, tonumber(dead), true
    if n > 0 then
      m.cache[1] = {num(f), num(F), f, F}
      m.cache[n] = {num(L), num(C), L, C}
    end
    return
  end
  -- No state, or one as an earlier version wrote it (the head, base, total, epoch and
  -- version in 'h', 'b', 'T', 'E' and 'V', and no summary of the log): count the log.
  if h[3] then
    local old = redis.call('HMGET', m.key, 'h', 'b', 'E', 'V')
    m.head, m.base, m.total, m.epoch, m.version = num(old[1]), num(old[2]), num(h[3]),
                                                  num(old[3]), num(old[4])
    m.base_text = old[2]
    m.legacy = true
  else
    m.head, m.base, m.total, m.epoch, m.version = 0, 0, 0, 0, 0
  end
  m.n, m.dead = redis.call('ZCARD', m.lk), 0
end
local function record(m, i) -- the i-th entry of the log, from 1
  local cached = m.cache[i]
  if cached then return cached end
  local rank = m.dead + i - 1
  local found = redis.call('ZRANGE', m.lk, rank, rank)
  local t, c = match(found[1], '^(%S+) (%S+)$')
  cached = {num(t), num(c), t, c}
  m.cache[i] = cached
  return cached
end
local function entry(m, i)
  local e = record(m, i)
  return e[1], e[2]
end
function SW.write(m, w)
  local n, total = m.n, m.total
  if n == 0 and m.dead > 0 then
    redis.call('DEL', m.lk)
    m.dead = 0
  end
  local f, F, L, C, t = '-', '-', '-', '-', nil
  if n > 0 then
    local first, last = record(m, 1), record(m, n)
    f, F, L, C = first[3], first[4], last[3], last[4]
    t = keep(total, last[2], last[4])
  else
    t = fmt(total)
  end
  local s = keep(m.head, m.read_head, m.head_text) .. ' ' .. (m.base_text or fmt(m.base)) .. ' '
    .. t .. ' ' .. keep(m.epoch, m.read_epoch, m.epoch_text) .. ' ' .. fmt(m.version) .. ' '
    .. fmt(n) .. ' ' .. fmt(m.dead) .. ' ' .. f .. ' ' .. F .. ' ' .. L .. ' ' .. C
  if m.marked then
    if w then redis.call('HSET', m.key, 'S', s, 'w', w) else redis.call('HSET', m.key, 'S', s) end
  else
    -- 'h' is not a number, so that an earlier version fails on this state at once.
    if w then
      redis.call('HSET', m.key, 'S', s, 'h', '-', 'w', w)
    else
      redis.call('HSET', m.key, 'S', s, 'h', '-')
    end
    m.marked = true
  end
  if m.legacy then
    redis.call('HDEL', m.key, 'T')
    m.legacy = false
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
  if n == 2 then return 1 end
  return redis.call('ZCOUNT', m.lk, '-inf', fmt(edge)) - m.dead
end
local function add(m, t, c) -- the new entry
  local ts, cs = fmt(t), fmt(c)
  redis.call('ZADD', m.lk, ts, ts .. ' ' .. cs)
  return {t, c, ts, cs}
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
    m.base_text = nil
    m.epoch = m.epoch + 1
    return
  end
  local size = m.head + n
  local gone, first, last = record(m, k), record(m, k + 1), record(m, n)
  m.base, m.base_text = gone[2], gone[4]
  -- The entries that left are removed in batches.
  local dead = m.dead + k
  if dead >= DEAD then
    redis.call('ZREMRANGEBYRANK', m.lk, 0, dead - 1)
    dead = 0
  end
  m.dead = dead
  m.n = n - k
  m.cache = {first}
  m.cache[m.n] = last
  m.head = m.head + k
  if m.head >= 32 and 2 * m.head >= size then
    local base = m.base
    local kept = redis.call('ZRANGE', m.lk, m.dead, -1)
    redis.call('DEL', m.lk)
    m.dead = 0
    local batch, total = {}, 0
    m.cache = {}
    for index, member in ipairs(kept) do
      local ts, cs = match(member, '^(%S+) (%S+)$')
      local c = num(cs) - base
      local e = {num(ts), c, ts, fmt(c)}
      m.cache[index] = e
      total = c
      batch[#batch + 1] = e[3]
      batch[#batch + 1] = e[3] .. ' ' .. e[4]
      if #batch >= 512 then
        redis.call('ZADD', m.lk, unpack(batch))
        batch = {}
      end
    end
    if #batch > 0 then redis.call('ZADD', m.lk, unpack(batch)) end
    m.total = total
    m.head, m.base, m.base_text = 0, 0, nil
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
      redis.call('ZREM', m.lk, e[3] .. ' ' .. e[4])
      m.cache[n] = add(m, at, total)
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
    redis.call('ZREMRANGEBYRANK', m.lk, -1, -1)
    m.cache[n] = nil
    m.n = n - 1
  else
    local last = record(m, n)
    redis.call('ZREM', m.lk, last[3] .. ' ' .. last[4])
    m.cache[n] = add(m, last[1], e[7])
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
    if part == 'n' then e[#e + 1] = false else e[#e + 1] = num(part) end
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
-- which only a sliding window uses), its state as read (here, or by the caller: *read*).
local function open(KEYS, ARGV, i, now, read)
  local at = 8 + 3 * (i - 1)
  local kind = KINDS[ARGV[at + 1]]
  local m = {kind = kind, key = KEYS[2 * i - 1], dirty = false, w = NONE}
  if kind == SW then m.lk = KEYS[2 * i] end
  kind.init(m, num(ARGV[at + 2]), num(ARGV[at + 3]))
  local h = read or kind.read(m)
  local w = h[1]
  if w and w ~= '' then
    -- Withdrawals are written back with every change (none: the field stays as is).
    m.w, m.withdrawn = {}, true
    for text in string.gmatch(w, '[^;]+') do m.w[#m.w + 1] = decode(text) end
  end
  kind.load(m, h, now)
  return m
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
  kind.write(m, withdrawn)
  -- Expire once the state is back at rest (a fresh one would answer the same).
  local rest = kind.rest(m, now) - now
  if not (rest > 0) then rest = 0 end
  local command, ms = 'PEXPIRE', math.ceil(rest * 1000) + margin
  if server_ms then command, ms = 'PEXPIREAT', server_ms + ms end
  ms = format('%d', ms)
  redis.call(command, m.key, ms)
  if m.n and m.n > 0 then redis.call(command, m.lk, ms) end
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
    format, match = string.format, string.match
  end
  local op = ARGV[1]
  local now
  if ARGV[2] == '' then
    local time = redis.call('TIME')
    local seconds, micros = tonumber(time[1]), tonumber(time[2])
    now = seconds + micros / 1000000
    server_ms = seconds * 1000 + floor(micros / 1000)
  else
    now = num(ARGV[2])
    server_ms = false
  end
  local cost = num(ARGV[3])
  local composite = ARGV[6] == '1'
  local margin = tonumber(ARGV[7])

  local read = nil -- the first member's state, if read already
  if op == 'try' and not composite and ARGV[9] == 'tb' then
    -- TokenBucket.try_acquire's grant, written out: the commonest call, with no tables.
    -- A refusal, or a state with withdrawals, takes the general path below.
    local key = KEYS[1]
    read = redis.call('HMGET', key, 'w', 'l', 's') -- as TB.read
    if not read[1] or read[1] == '' then
      local per_second, capacity = num(ARGV[10]), num(ARGV[11])
      local level = capacity
      if read[2] then level = num(read[2]) + (now - num(read[3])) * per_second end
      if level > capacity then level = capacity end
      if level >= cost then
        level = level - cost
        redis.call('HSET', key, 'l', fmt(level), 's', fmt(now))
        local rest = (now + (capacity - level) / per_second) - now -- as TB.rest, then save
        if not (rest > 0) then rest = 0 end
        local command, ms = 'PEXPIRE', math.ceil(rest * 1000) + margin
        if server_ms then command, ms = 'PEXPIREAT', server_ms + ms end
        redis.call(command, key, format('%d', ms))
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

  local count = tonumber(ARGV[8])
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
    local at = num(ARGV[4])
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
