--- The Redis session store (docs/store.md), with a lease and a fencing
-- token per identity, for fleets of workers on one Redis (`ucwa.fleet`).
--
-- hiredis on the engine's own loop (`eng:redis`, src/redis.c): every method
-- answers later, from a `step()` of the engine the store runs on: the
-- client's (the first client made with the store attaches it), which every
-- client using the store then shares (`ucwa.fleet` does it).
--
-- Keys, for an identity `id` and the prefix `P` (default `"ucwa:"`), with a
-- hash tag so that one identity's keys live in one Redis Cluster slot:
-- `P{id}:values` (hash: key -> value), `P{id}:inbox` (hash: seq -> batch),
-- `P{id}:lease` (the owner's name, with a TTL), `P{id}:fence` (a counter).
--
-- **Lease and fence.** `acquire` takes an identity's lease (`SET NX PX`) and
-- with it a fencing token (`INCR` of the fence counter); the store renews
-- every lease it holds every `lease / 3` seconds. Every write is a Lua script
-- that checks the writer's fence against the counter and fails with
-- `Conflict/LeaseLost` when a newer owner took the identity: a worker that
-- lost its lease (paused, partitioned) cannot write over the new owner. The
-- store also keeps a local deadline per lease (the time its last renewal was
-- sent plus 85% of the lease): past it, a write fails with `LeaseLost`
-- before anything is sent, and the lease counts as lost (`on_lost`).
-- @module ucwa.store_redis
local errors = require "ucwa.errors"

local M = {}

local Store = {}
Store.__index = Store
Store.__name = "ucwa.store.redis"

-- the share of the lease a worker trusts its own clock for (see above)
M.LEASE_TRUST = 0.85


-- Scripts. KEYS and ARGV as each names; a fenced write starts with the check.
local FENCE_CHECK = [[
local f = redis.call('GET', KEYS[1])
if f ~= ARGV[1] then
  return redis.error_reply('LEASELOST a newer owner holds this identity (fence ' .. tostring(f) .. ')')
end
]]

-- the changes from ARGV[i]: a count n, then n name/value pairs, then the rest deleted
local APPLY = [[
local function apply(h, i)
  local n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do redis.call('HSET', h, ARGV[i], ARGV[i + 1]); i = i + 2 end
  while i <= #ARGV do redis.call('HDEL', h, ARGV[i]); i = i + 1 end
end
]]

local SCRIPTS = {
  -- (fenced writes, and only they, have the fence counter as KEYS[1])
  -- KEYS lease, fence; ARGV owner, ms -> fence, or {owner, pttl} when another holds it
  acquire = [[
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return {cur, redis.call('PTTL', KEYS[1])} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('INCR', KEYS[2])
]],
  -- KEYS lease, fence; ARGV owner, fence, ms -> 1 renewed, 0 lost
  renew = [[
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
]],
  -- KEYS lease, fence; ARGV owner, fence -> 1 released, 0 not ours
  release = [[
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
]],
  -- KEYS values, inbox -> {values hash, inbox hash}
  load = [[
return {redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
]],
  -- KEYS fence, values; ARGV fence, changes...
  set = FENCE_CHECK .. APPLY .. [[
apply(KEYS[2], 2)
return 1
]],
  -- KEYS fence, values, inbox; ARGV fence, seq, data, changes...
  inbox_put = FENCE_CHECK .. APPLY .. [[
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
apply(KEYS[2], 4)
return 1
]],
  -- KEYS fence, inbox; ARGV fence, seq
  inbox_done = FENCE_CHECK .. [[
redis.call('HDEL', KEYS[2], ARGV[2])
return 1
]],
  -- KEYS fence, values, inbox; ARGV fence
  clear = FENCE_CHECK .. [[
redis.call('DEL', KEYS[2], KEYS[3])
return 1
]],
}

local function store_error(err)
  if err.code == "RedisError" and err.subcode == "LEASELOST" then
    return errors.new{ code = "Conflict", subcode = "LeaseLost", message = err.message:gsub("^LEASELOST ", "") }
  end
  return errors.new{ code = "StoreError", subcode = err.code, message = "Redis: " .. tostring(err.message) }
end

local function lease_lost(identity, why)
  return errors.new{ code = "Conflict", subcode = "LeaseLost", identity = identity,
    message = "the lease on this identity is lost (" .. why .. ")" }
end

local function check(cond, msg)
  if not cond then error("ucwa.store.redis: " .. msg, 3) end
end

local function check_identity(identity)
  check(type(identity) == "string" and identity ~= "", "identity must be a non-empty string")
end

local function check_done(done) check(type(done) == "function", "done must be a function") end

local function default_owner()
  local h = io.open("/etc/hostname")
  local host = h and h:read("l") or "host"
  if h then h:close() end
  return ("%s-%s-%06x"):format(host, tostring({}):match("0x(%x+)") or "0", math.random(0, 0xffffff))
end

local OPTIONS = { host = true, port = true, prefix = true, engine = true, timeout = true, lease = true,
  owner = true, reconnect = true }

--- Makes a Redis store. Options: `host` ("127.0.0.1"), `port` (6379),
-- `prefix` ("ucwa:"), `engine` (default: the engine of the first client
-- made with the store; see @{Store:attach}), `timeout` (seconds for a reply, 5), `lease`
-- (seconds, 10), `owner` (this worker's name in the leases; default host,
-- a random part), `reconnect = {initial = 0.1, max = 5}` (the backoff
-- between connection attempts). Raises on a bad option.
function M.new(opts)
  opts = opts or {}
  check(type(opts) == "table", "options must be a table")
  for k in pairs(opts) do check(OPTIONS[k], "unknown option '" .. tostring(k) .. "'") end
  check(opts.prefix == nil or type(opts.prefix) == "string", "option 'prefix' must be a string")
  check(opts.owner == nil or (type(opts.owner) == "string" and opts.owner ~= ""),
    "option 'owner' must be a non-empty string")
  check(opts.lease == nil or (type(opts.lease) == "number" and opts.lease >= 0.1),
    "option 'lease' must be a number of seconds, 0.1 or more")
  local rc = opts.reconnect or {}
  check(type(rc) == "table", "option 'reconnect' must be a table")
  local self = setmetatable({
    kind = "redis", async = true,
    host = opts.host or "127.0.0.1", port = opts.port or 6379,
    prefix = opts.prefix or "ucwa:", timeout = opts.timeout or 5,
    lease = opts.lease or 10, owner = opts.owner or default_owner(),

    backoff_initial = rc.initial or 0.1, backoff_max = rc.max or 5,
    held = {}, lost_handlers = {}, sha = {}, closed = false,
    stats = { commands = 0, writes = 0, failures = 0, reconnects = 0 },
  }, Store)
  self.delay = self.backoff_initial
  if opts.engine then self:attach(opts.engine) end
  return self
end

--- Puts the store on `engine` (the session does it with the client's): its
-- connection and timers run there. A store runs on one engine: another
-- raises. Without `engine =` at `new`, the first client attaches it.
function Store:attach(engine)
  check(type(engine) == "userdata" and engine.redis, "attach needs an engine")
  if self.engine == engine then return self end
  check(self.engine == nil, "this store runs on another engine: give its clients engine = store.engine")
  self.engine = engine
  self:_connect()
  self.renew_timer = self:_engine():timer(self.lease / 3, function() self:_renew_all() end)
  return self
end

-- the engine, or a clear error for a store used before any client attached it
function Store:_engine()
  if not self.engine then error("ucwa.store.redis: no engine yet: give engine = at new, or attach one", 3) end
  return self.engine
end

-- connection ---------------------------------------------------------------

function Store:_connect()
  self.reconnect_timer = nil
  if self.closed then return end
  local conn, err = self.engine:redis{ host = self.host, port = self.port, timeout = self.timeout,
    on_close = function(e) self:_down(e) end }
  if not conn then return self:_down(err) end
  self.conn = conn
  -- the worker's name on its connection (CLIENT LIST shows it)
  conn:command({ "CLIENT", "SETNAME", (self.owner:gsub("[^%w%-_.:/]", "_")) }, function() end)
  for name, text in pairs(SCRIPTS) do
    self.sha[name] = nil
    conn:command({ "SCRIPT", "LOAD", text }, function(sha)
      if type(sha) == "string" then self.sha[name] = sha end
    end)
  end
end

-- The connection is gone: try again after a jittered, doubling delay.
function Store:_down(err)
  self.conn = nil
  self.last_error = err
  if self.closed or self.reconnect_timer then return end
  local d = self.delay * (0.5 + math.random() / 2)
  self.delay = math.min(self.delay * 2, self.backoff_max)
  self.stats.reconnects = self.stats.reconnects + 1
  self.reconnect_timer = self:_engine():timer(d, function() self:_connect() end)
end

-- Later, from a step: for answers that need no Redis.
function Store:_later(fn, ...)
  local args = table.pack(...)
  self:_engine():timer(0, function() fn(table.unpack(args, 1, args.n)) end)
end

-- Runs one command: cb(reply) or cb(nil, store error).
function Store:_command(args, cb)
  self.stats.commands = self.stats.commands + 1
  local conn = self.conn
  if not conn then
    self.stats.failures = self.stats.failures + 1
    local why = self.last_error and self.last_error.message or "not connected"
    return self:_later(cb, nil, errors.new{ code = "StoreError", subcode = "ConnectionFailed",
      message = "Redis unavailable: " .. why })
  end
  local ok, err = conn:command(args, function(reply, e)
    if e then
      self.stats.failures = self.stats.failures + 1
      return cb(nil, store_error(e))
    end
    self.delay = self.backoff_initial
    return cb(reply)
  end)
  if not ok then
    self.conn = nil
    self:_down(err)
    return self:_later(cb, nil, store_error(err))
  end
end

-- Runs the script `name` (EVALSHA once loaded; EVAL when Redis lost it).
function Store:_script(name, keys, argv, cb)
  local sha = self.sha[name]
  local args = { sha and "EVALSHA" or "EVAL", sha or SCRIPTS[name], #keys }
  for _, k in ipairs(keys) do args[#args + 1] = k end
  for _, a in ipairs(argv) do args[#args + 1] = a end
  self:_command(args, function(reply, err)
    if err and err.subcode == "RedisError" and err.message:find("NOSCRIPT", 1, true) then
      self.sha[name] = nil
      args[1], args[2] = "EVAL", SCRIPTS[name]
      return self:_command(args, cb)
    end
    return cb(reply, err)
  end)
end

--- Runs a Lua script of the caller's (EVAL): cb(reply) or cb(nil, err).
-- For what builds on the store's connection (`ucwa.fleet`'s heartbeats).
function Store:eval(text, keys, argv, cb)
  local args = { "EVAL", text, #keys }
  for _, k in ipairs(keys) do args[#args + 1] = k end
  for _, a in ipairs(argv) do args[#args + 1] = a end
  return self:_command(args, cb)
end

-- keys ----------------------------------------------------------------------

function Store:_key(identity, what)
  return self.prefix .. "{" .. identity .. "}:" .. what
end

-- leases --------------------------------------------------------------------

--- Takes the lease of `identity` for this worker: done(fence), or
-- done(false, owner, ttl) when another worker holds it (ttl in seconds), or
-- done(nil, err). Each take gets a new fence; the store renews the lease
-- until it is released or lost.
function Store:acquire(identity, done)
  check_identity(identity); check_done(done)
  local sent = self:_engine():now()
  local ms = math.floor(self.lease * 1000)
  self:_script("acquire", { self:_key(identity, "lease"), self:_key(identity, "fence") }, { self.owner, ms },
    function(reply, err)
      if err then return done(nil, err) end
      if type(reply) == "table" then return done(false, reply[1], (tonumber(reply[2]) or 0) / 1000) end
      local h = self.held[identity]
      if h and h.timer then h.timer:cancel() end
      self.held[identity] = { fence = tostring(reply) }
      self:_trust(identity, sent)
      return done(tostring(reply))
    end)
end

-- The lease counts as ours until `sent + lease * LEASE_TRUST`.
function Store:_trust(identity, sent)
  local h = self.held[identity]
  if not h then return end
  h.deadline = sent + self.lease * M.LEASE_TRUST
  if h.timer then h.timer:cancel() end
  h.timer = self:_engine():timer(math.max(0, h.deadline - self:_engine():now()), function()
    h.timer = nil
    if self.held[identity] == h then self:_lost(identity, "not renewed in time") end
  end)
end

--- Whether this worker holds `identity`'s lease now (by its own clock);
-- returns the fence too.
function Store:holds(identity)
  local h = self.held[identity]
  if h and h.deadline and self:_engine():now() < h.deadline then return true, h.fence end
  return false
end

--- Calls fn(identity, err) whenever a lease this store held is lost (taken
-- over, not renewed in time, a write refused by the fence).
function Store:on_lost(fn)
  self.lost_handlers[#self.lost_handlers + 1] = fn
end

function Store:_lost(identity, why)
  local h = self.held[identity]
  if not h then return end
  self.held[identity] = nil
  if h.timer then h.timer:cancel() end
  local err = lease_lost(identity, why)
  for _, fn in ipairs(self.lost_handlers) do fn(identity, err) end
end

function Store:_renew_all()
  self.renew_timer = nil
  if self.closed then return end
  local ms = math.floor(self.lease * 1000)
  for identity, h in pairs(self.held) do
    local sent = self:_engine():now()
    self:_script("renew", { self:_key(identity, "lease"), self:_key(identity, "fence") }, { self.owner, h.fence, ms },
      function(reply, err)
        if self.held[identity] ~= h then return end
        if err then return end -- the local deadline decides
        if reply == 1 then return self:_trust(identity, sent) end
        return self:_lost(identity, "another worker took it over")
      end)
  end
  self.renew_timer = self:_engine():timer(self.lease / 3, function() self:_renew_all() end)
end

--- Gives up the lease of `identity` (when it is still this worker's):
-- done(true) or done(nil, err).
function Store:release(identity, done)
  check_identity(identity)
  local h = self.held[identity]
  self.held[identity] = nil
  if h and h.timer then h.timer:cancel() end
  if not h then return self:_later(done or function() end, true) end
  self:_script("release", { self:_key(identity, "lease"), self:_key(identity, "fence") }, { self.owner, h.fence },
    function(_, err) if done then done(err == nil or nil, err) end end)
end

--- Who holds `identity`'s lease: done(owner or false, ttl seconds).
function Store:owner_of(identity, done)
  check_identity(identity); check_done(done)
  self:_command({ "GET", self:_key(identity, "lease") }, function(owner, err)
    if err then return done(nil, err) end
    self:_command({ "PTTL", self:_key(identity, "lease") }, function(ttl)
      done(type(owner) == "string" and owner or false, (tonumber(ttl) or 0) / 1000)
    end)
  end)
end

-- the store interface (docs/store.md) ---------------------------------------

--- Starts driving `identity`: done(fence). The lease this worker holds, or
-- taken now when it is free; done(nil, LeaseLost) when another worker holds it.
function Store:begin(identity, done)
  check_identity(identity); check_done(done)
  local ok, fence = self:holds(identity)
  if ok then return self:_later(done, fence) end
  self:acquire(identity, function(f, owner)
    if f then return done(f) end
    if f == false then return done(nil, lease_lost(identity, "held by " .. tostring(owner))) end
    return done(nil, owner)
  end)
end

local function hash_pairs(list)
  local t = {}
  for i = 1, #(list or {}), 2 do t[list[i]] = list[i + 1] end
  return t
end

--- Everything kept for `identity`: done({values =, inbox =}) or done(false).
function Store:load(identity, done)
  check_identity(identity); check_done(done)
  self:_script("load", { self:_key(identity, "values"), self:_key(identity, "inbox") }, {}, function(reply, err)
    if err then return done(nil, err) end
    local values, inbox = hash_pairs(reply[1]), {}
    for seq, data in pairs(hash_pairs(reply[2])) do
      inbox[#inbox + 1] = { seq = math.tointeger(tonumber(seq)), data = data }
    end
    table.sort(inbox, function(a, b) return a.seq < b.seq end)
    if next(values) == nil and #inbox == 0 then return done(false) end
    return done({ values = values, inbox = inbox })
  end)
end

-- ARGV for changes: the count of sets, the pairs, the deletions
local function changes_args(argv, changes)
  local sets, dels = {}, {}
  for k, v in pairs(changes or {}) do
    check(type(k) == "string", "change keys must be strings")
    if v == false then dels[#dels + 1] = k
    else
      check(type(v) == "string", "change values must be strings or false")
      sets[#sets + 1] = k; sets[#sets + 1] = v
    end
  end
  argv[#argv + 1] = #sets // 2
  for _, s in ipairs(sets) do argv[#argv + 1] = s end
  for _, d in ipairs(dels) do argv[#argv + 1] = d end
  return argv
end

-- A fenced write: refused here, nothing sent, when the lease is not this worker's
-- by its clock; by the script when a newer owner holds the fence.
function Store:_write(identity, fence, name, keys, argv, done)
  local ok, held = self:holds(identity)
  if not ok or tostring(fence) ~= held then
    local err = lease_lost(identity, self.held[identity] and "not renewed in time" or "not held by this worker")
    if self.held[identity] then self:_lost(identity, "not renewed in time") end
    return self:_later(done, nil, err)
  end
  self.stats.writes = self.stats.writes + 1
  self:_script(name, keys, argv, function(reply, err)
    if err then
      if err.subcode == "LeaseLost" then self:_lost(identity, "a newer owner holds the fence") end
      return done(nil, err)
    end
    return done(reply == 1)
  end)
end

--- One atomic write of `changes` (key -> string, or false to delete): done(true).
function Store:set(identity, fence, changes, done)
  check_identity(identity); check_done(done)
  local argv = changes_args({ tostring(fence) }, changes)
  return self:_write(identity, fence, "set", { self:_key(identity, "fence"), self:_key(identity, "values") },
    argv, done)
end

--- Adds batch `seq` with `data` to the inbox and applies `changes`, atomically: done(true).
function Store:inbox_put(identity, fence, seq, data, changes, done)
  check_identity(identity); check_done(done)
  check(math.type(seq) == "integer", "seq must be an integer")
  check(type(data) == "string", "data must be a string")
  local argv = changes_args({ tostring(fence), seq, data }, changes)
  return self:_write(identity, fence, "inbox_put",
    { self:_key(identity, "fence"), self:_key(identity, "values"), self:_key(identity, "inbox") }, argv, done)
end

--- Marks batch `seq` done (it leaves the inbox): done(true).
function Store:inbox_done(identity, fence, seq, done)
  check_identity(identity); check_done(done)
  check(math.type(seq) == "integer", "seq must be an integer")
  return self:_write(identity, fence, "inbox_done", { self:_key(identity, "fence"), self:_key(identity, "inbox") },
    { tostring(fence), seq }, done)
end

--- Forgets everything kept for `identity` (the lease stays): done(true).
function Store:clear(identity, fence, done)
  check_identity(identity); check_done(done)
  return self:_write(identity, fence, "clear",
    { self:_key(identity, "fence"), self:_key(identity, "values"), self:_key(identity, "inbox") },
    { tostring(fence) }, done)
end

--- Closes the connection and stops renewing (the leases lapse on their own:
-- release them first for a quick handover). Idempotent.
function Store:close()
  if self.closed then return end
  self.closed = true
  for _, h in pairs(self.held) do if h.timer then h.timer:cancel() end end
  self.held = {}
  if self.renew_timer then self.renew_timer:cancel() end
  if self.reconnect_timer then self.reconnect_timer:cancel() end
  if self.conn then self.conn:close() end
  self.conn = nil
end

function Store:__tostring()
  return ("ucwa.store.redis (%s:%d, %s)"):format(self.host, self.port, self.prefix)
end

M.Store = Store

return M
