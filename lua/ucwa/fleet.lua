--- A fleet of bots shared by worker processes on one Redis: run
-- `ucwa.fleet{ store =, bots = }` in each worker (on any machine).
--
-- Each worker claims free bots (their leases, `ucwa.store.redis`) up to its
-- share, starts them (`ucwa.client` with the store: a bot another worker
-- drove carries on its stored session), renews their leases, and stops
-- driving at once any bot whose lease it lost (`client:release()`: no
-- write, no request, the application left to the new owner). A bot whose
-- lease lapsed (its worker died, or hangs) is taken over by the others
-- within the lease time and one scan.
--
-- The share: `share = n` caps the bots a worker drives; by default it is
-- fair, `ceil(#bots / live workers)`, the live workers counted from their
-- heartbeats in Redis (a sorted set scored by Redis's own clock, so the
-- machines' clocks do not matter). A worker over its share gives one bot
-- back a scan, so workers that start later get theirs.
-- @module ucwa.fleet
local errors = require "ucwa.errors"

local fleet = {}

local Fleet = {}
Fleet.__index = Fleet
Fleet.__name = "ucwa.fleet"

-- KEYS workers; ARGV owner, lease ms -> live workers (this one included)
local HEARTBEAT = [[
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms - tonumber(ARGV[2]))
return redis.call('ZCARD', KEYS[1])
]]

-- KEYS workers; ARGV owner
local LEAVE = [[
return redis.call('ZREM', KEYS[1], ARGV[1])
]]

local OPTIONS = { engine = true, store = true, bots = true, share = true, lease = true, scan = true, name = true,
  on_bot = true, on_drop = true, on_error = true, client = true }

local function check(cond, msg)
  if not cond then error("ucwa.fleet: " .. msg, 3) end
end

-- bots: a list of {name =, ...client options} or a map name -> options
local function bot_list(bots)
  local list = {}
  if #bots > 0 then
    for i, b in ipairs(bots) do
      check(type(b) == "table" and type(b.name) == "string" and b.name ~= "", "bots[" .. i .. "] needs a name")
      local o = {}
      for k, v in pairs(b) do if k ~= "name" then o[k] = v end end
      list[#list + 1] = { name = b.name, options = o }
    end
  else
    for name, o in pairs(bots) do
      check(type(name) == "string" and type(o) == "table", "bots must map names to client options")
      list[#list + 1] = { name = name, options = o }
    end
    table.sort(list, function(a, b) return a.name < b.name end)
  end
  local seen = {}
  for _, b in ipairs(list) do
    check(not seen[b.name], "two bots named " .. b.name)
    seen[b.name] = true
  end
  return list
end

--- Makes a fleet worker. Options: `store` (a `ucwa.store.redis`; its
-- engine runs every bot), `engine` (for a store not yet on one: default a
-- new `ucwa.engine()`), `bots` (a list of `{name =, ...}` or a map name
-- -> client options: `url`, `username`, `password`, ...; the name is the
-- bot's `store_key`), `share` (bots at most; default fair, see above),
-- `lease` (seconds; default the store's), `scan` (seconds between looks
-- for free bots; default lease / 3), `name` (the fleet's, for its keys;
-- "fleet"), `on_bot(name, client)` (before the bot starts: attach its
-- handlers), `on_drop(name, err)` (the worker stopped driving it),
-- `on_error(name, err)` (a bot's error; default: ignored), `client` (options
-- for every bot's client). Raises on a bad option.
function fleet.new(opts)
  check(type(opts) == "table", "options must be a table")
  for k in pairs(opts) do check(OPTIONS[k], "unknown option '" .. tostring(k) .. "'") end
  local store = opts.store
  check(type(store) == "table" and store.kind == "redis" and store.acquire, "option 'store' must be a ucwa.store.redis")
  check(type(opts.bots) == "table", "option 'bots' must be a table")
  check(opts.share == nil or (math.type(opts.share) == "integer" and opts.share >= 0),
    "option 'share' must be a whole number")
  check(opts.lease == nil or (type(opts.lease) == "number" and opts.lease >= 0.1),
    "option 'lease' must be seconds, 0.1 or more")
  for _, k in ipairs{ "on_bot", "on_drop", "on_error" } do
    check(opts[k] == nil or type(opts[k]) == "function", "option '" .. k .. "' must be a function")
  end
  if opts.lease then store.lease = opts.lease end
  -- every bot on the store's engine (one epoll set, one connection pool)
  if not store.engine then store:attach(opts.engine or require("ucwa").engine()) end
  local self = setmetatable({
    store = store, engine = store.engine, bots = bot_list(opts.bots), share = opts.share,
    scan_every = opts.scan or store.lease / 3, name = opts.name or "fleet",
    on_bot = opts.on_bot, on_drop = opts.on_drop, on_error = opts.on_error, client_opts = opts.client or {},
    driving = {},   -- name -> client
    claiming = {},  -- name -> true while its acquire is in flight
    live = 1, running = false,
    stats = { claimed = 0, lost = 0, released = 0 },
  }, Fleet)
  self.by_name = {}
  for _, b in ipairs(self.bots) do self.by_name[b.name] = b end
  store:on_lost(function(name, err) self:drop(name, err) end)
  return self
end

function Fleet:_workers_key()
  return self.store.prefix .. self.name .. ":workers"
end

--- How many bots this worker drives now.
function Fleet:count()
  local n = 0
  for _ in pairs(self.driving) do n = n + 1 end
  return n
end

--- The bots this worker drives: name -> client.
function Fleet:clients()
  local t = {}
  for k, v in pairs(self.driving) do t[k] = v end
  return t
end

--- The share this worker aims for now.
function Fleet:target()
  if self.share then return self.share end
  return math.ceil(#self.bots / math.max(1, self.live))
end

--- Starts working: the first scan comes after one heartbeat, so that
-- workers started together see each other before they claim.
function Fleet:start()
  if self.running then return self end
  self.running = true
  self:_heartbeat(function() self.timer = self.engine:timer(self.scan_every, function() self:_scan() end) end)
  return self
end

function Fleet:_heartbeat(then_)
  local ms = math.floor(self.store.lease * 1000)
  self.store:eval(HEARTBEAT, { self:_workers_key() }, { self.store.owner, ms }, function(n)
    if math.type(n) == "integer" then self.live = n end
    if then_ then then_() end
  end)
end

-- One look: the heartbeat, then claims up to the share, or one bot given back.
function Fleet:_scan()
  self.timer = nil
  if not self.running then return end
  self:_heartbeat(function()
    if not self.running then return end
    local want = self:target()
    local have = self:count()
    for _ in pairs(self.claiming) do have = have + 1 end
    if have < want then
      -- a different order in each worker: fewer of them race for one bot
      local order = {}
      for _, b in ipairs(self.bots) do
        if not self.driving[b.name] and not self.claiming[b.name] then order[#order + 1] = b end
      end
      for i = #order, 2, -1 do
        local j = math.random(i)
        order[i], order[j] = order[j], order[i]
      end
      self:_claim_some(order, want - have)
    elseif have > want and not self.share then
      local names = {}
      for name in pairs(self.driving) do names[#names + 1] = name end
      table.sort(names)
      self:give_back(names[#names])
    end
    self.timer = self.engine:timer(self.scan_every, function() self:_scan() end)
  end)
end

-- Takes the leases of up to `n` bots of `order`, one after the other (a
-- bot another worker holds: the next one), and starts each.
function Fleet:_claim_some(order, n, i)
  i = i or 1
  local b = order[i]
  if n <= 0 or not b or not self.running then return end
  if self.driving[b.name] or self.claiming[b.name] then return self:_claim_some(order, n, i + 1) end
  self.claiming[b.name] = true
  self.store:acquire(b.name, function(fence)
    self.claiming[b.name] = nil
    if fence and not self.running then
      self.store:release(b.name)
    elseif fence then
      self.stats.claimed = self.stats.claimed + 1
      self:_start_bot(b)
      n = n - 1
    end
    return self:_claim_some(order, n, i + 1)
  end)
end

function Fleet:_start_bot(b)
  local o = {}
  for k, v in pairs(self.client_opts) do o[k] = v end
  for k, v in pairs(b.options) do o[k] = v end
  o.engine, o.store, o.store_key = self.engine, self.store, b.name
  local ok, c = pcall(require("ucwa").client, o)
  if not ok then
    self.store:release(b.name)
    return self:_error(b.name, errors.new{ code = "BadRequest", message = "bot " .. b.name .. ": " .. tostring(c) })
  end
  self.driving[b.name] = c
  c:on("error", function(err) self:_error(b.name, err) end)
  if self.on_bot then self.on_bot(b.name, c) end
  c:start()
end

function Fleet:_error(name, err)
  if self.on_error then self.on_error(name, err) end
end

--- Stops driving bot `name` at once (its lease is lost): no write, no
-- request; the new owner carries on. Called by the store.
function Fleet:drop(name, err)
  local c = self.driving[name]
  if not c then return end
  self.driving[name] = nil
  self.stats.lost = self.stats.lost + 1
  c:release()
  if self.on_drop then self.on_drop(name, err) end
end

--- Gives bot `name` back (over the share, or for a deploy): stopped
-- without a word to the server, then its lease released for another worker
-- to take.
function Fleet:give_back(name)
  local c = self.driving[name]
  if not c then return end
  self.driving[name] = nil
  self.stats.released = self.stats.released + 1
  c:release()
  self.store:release(name)
  if self.on_drop then
    self.on_drop(name, errors.new{ code = "Conflict", subcode = "GivenBack", message = "over this worker's share" })
  end
end

--- Runs ready work for up to `timeout` seconds (0: only what is ready):
-- the engine's step, with every bot's errors no handler took sent to
-- on_error.
function Fleet:step(timeout)
  self.engine:step(timeout or 0)
  for name, c in pairs(self.driving) do
    local s = c._session
    local e = s and s.next_deferred and s:next_deferred()
    while e do
      self:_error(name, e)
      e = s:next_deferred()
    end
  end
  return self
end

--- Runs until fleet:stop(), or for `seconds`.
function Fleet:run(seconds)
  local deadline = seconds and self.engine:now() + seconds
  while self.running and (not deadline or self.engine:now() < deadline) do self:step(0.5) end
  return self
end

--- Stops this worker and hands its bots over: each stopped without a word
-- to the server, its lease released for another worker; done() once Redis
-- answered.
function Fleet:stop(done)
  self.running = false
  if self.timer then self.timer:cancel() end
  self.timer = nil
  local pending = 1
  local function one()
    pending = pending - 1
    if pending == 0 and done then done() end
  end
  for name, c in pairs(self.driving) do
    c:release()
    pending = pending + 1
    self.store:release(name, one)
  end
  self.driving = {}
  pending = pending + 1
  self.store:eval(LEAVE, { self:_workers_key() }, { self.store.owner }, one)
  one()
end

fleet.Fleet = Fleet

return setmetatable(fleet, { __call = function(_, opts) return fleet.new(opts) end })
