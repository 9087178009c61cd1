-- The cost of a session store (issue 14), against ucwa-sim, side by side in
-- one run: figures only, no pass/fail; every ratio is against no store,
-- measured in the same run.
--   1. event latency: the simulator's release of one event to the bot's Lua
--      callback (median and 99th percentile of STORE_BENCH_ROUNDS, default
--      300): with a store, each one-event batch is written to the inbox before
--      the next P-GET goes out, and marked done after dispatch
--   2. events per second through one client, 20,000 events released 1,000 at
--      a time (a write per batch of up to 1,000)
--   3. memory per bot: STORE_BENCH_BOTS (default 200) bots signed in on one
--      engine, each left with a pending P-GET, with and without one shared
--      store (RSS, C+Lua heap in use and Lua heap per bot), each store in a
--      process of its own so that one run's memory is not the next one's
-- The stores are the rows of STORES: a fleet's store adds a row (a name and
-- a function making it, or nil and why it is not available here).
local build = os.getenv("UCWA_BUILD") or "build"
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;bench/lib/?.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath

local ucwa = require "ucwa"
local gettime = require("socket").gettime
local util = require "bench_util"
local report, wait_for, percentile, rss_kb = util.report, util.wait_for, util.percentile, util.rss_kb

local ROUNDS = tonumber(os.getenv("STORE_BENCH_ROUNDS") or "300")
local BOTS = tonumber(os.getenv("STORE_BENCH_BOTS") or "200")
local TOTAL = 20000

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))
local function sqlite(level)
  return function(name) return ucwa.store.sqlite(dir .. "/" .. name .. ".db", { synchronous = level }) end
end

-- The fleet's store: a redis-server of the store's own (append-only, with
-- `appendfsync` = fsync), stopped when the store is closed.
local function redis(fsync)
  return function()
    if os.execute("command -v redis-server >/dev/null 2>&1") ~= true then return nil, "no redis-server" end
    local srv = require("support.redis_server").start{ args = { "--appendonly", "yes", "--appendfsync", fsync } }
    local s = require("ucwa.store_redis").new{ port = srv.port, prefix = "bench:" }
    local close = s.close
    s.close = function(self) close(self); srv:stop() end
    return s
  end
end

--- The stores compared: { name, make(name) -> store | nil, why }; nil make: no store.
local STORES = {
  { "no store", nil },
  { "sqlite off", sqlite("off") },
  { "sqlite normal", sqlite("normal") },
  { "sqlite full", sqlite("full") },
  { "sqlite extra", sqlite("extra") },
  { "redis everysec", redis("everysec") },
  { "redis always", redis("always") },
}

local has_bench, bench = pcall(require, "ucwa_bench") -- bench.heap(): C heap in use (make bench builds it)
local function heap_kb() return has_bench and bench.heap() / 1024 or 0 end

local function signed_in(sim, eng, store, key)
  return util.signed_in(eng, { url = sim.url, store = store, store_key = store and key or nil }, 30)
end

-- Latency and throughput of one client with `store`.
local function measure(sim, store, key)
  local eng = ucwa.engine{}
  local c = signed_in(sim, eng, store, key)
  local _, st = sim:control("GET", "/_sim/state")
  local app = st.applications[#st.applications].id
  local url = ("%s/_sim/apps/%d/events"):format(sim.base, app)
  local function release(count, on_answer) util.release(eng, url, count, on_answer) end
  local t_event
  local received = 0
  c:on("event", function(ev)
    if ev.link and ev.link.rel == "note" then t_event = gettime(); received = received + 1 end
  end)
  local lat = {}
  for i = 1, ROUNDS do
    eng:step(0.003) -- the next P-GET settles at the server
    local released
    t_event = nil
    release(1, function(at) released = at end)
    while not (t_event and released) do eng:step(1) end
    lat[i] = t_event - released
  end
  received = 0
  local t0 = gettime()
  for _ = 1, TOTAL // 1000 do release(1000) end
  wait_for(function() eng:step(0.05) end, function() return received >= TOTAL end, 120)
  local rate = TOTAL / (gettime() - t0)
  c:close()
  eng:close()
  return { median = percentile(lat, 0.5), p99 = percentile(lat, 0.99), rate = rate }
end

-- Memory per bot: BOTS bots on one engine, with one store for all (or none).
local function memory(sim, store)
  collectgarbage()
  collectgarbage()
  local rss0, c0, heap0 = rss_kb(), heap_kb(), collectgarbage("count")
  local eng = ucwa.engine{}
  local bots = {}
  for i = 1, BOTS do
    local c = ucwa.client{ url = sim.url, username = "bot@contoso.com", password = "password", engine = eng,
                           store = store, store_key = store and ("bot-" .. i) or nil }
    c:on("ready", function() c.ready = true end)
    c:start()
    bots[i] = c
  end
  wait_for(function() eng:step(0.01) end, function()
    for _, c in ipairs(bots) do if not c.ready then return false end end
    return true
  end, 120)
  collectgarbage()
  collectgarbage()
  local per = { rss = (rss_kb() - rss0) / BOTS, c = (heap_kb() - c0) / BOTS,
                heap = (collectgarbage("count") - heap0) / BOTS }
  for _, c in ipairs(bots) do c:release() end
  eng:close()
  return per
end

-- `store_bench.lua memory URL I`: the memory run of STORES[I] against the
-- simulator at URL, in this process (the parent reads its one line)
if arg[1] == "memory" then
  local make = STORES[tonumber(arg[3])][2]
  local store = make and assert(make(("mem" .. arg[3])))
  local per = memory({ url = arg[2] }, store)
  io.write(("%.3f %.3f %.3f\n"):format(per.rss, per.c, per.heap))
  if store then store:close() end
  os.execute("rm -rf " .. dir)
  os.exit(0)
end

local function memory_apart(sim, i)
  local p = assert(io.popen(("%s %s memory %q %d"):format(arg[-1] or "lua5.4", arg[0], sim.url, i)))
  local out = p:read("a")
  p:close()
  local rss, c, heap = out:match("^(%S+) (%S+) (%S+)")
  if not rss then error("memory run of " .. STORES[i][1] .. " failed: " .. out) end
  return { rss = tonumber(rss), c = tonumber(c), heap = tonumber(heap) }
end

local sim = require("ucwa.sim").start{ step_delay = 0, min_timeout = 0.1, min_aggregation = 0, app_idle = 3600 }
local rows, base = {}, nil
for i, s in ipairs(STORES) do
  local name, make = s[1], s[2]
  local store, why
  if make then store, why = make(name:gsub("%W", "_")) end
  if make and not store then
    report("%s: not measured (%s)", name, tostring(why))
  else
    local m = measure(sim, store, "bench-" .. name)
    if store then store:close() end
    m.mem = memory_apart(sim, i)
    base = base or m
    rows[#rows + 1] = { name, m }
    report("%s: latency median %.0f us (p99 %.0f us), %.0f events/s; per bot %.1f KB RSS, %.1f KB heap in use,"
      .. " %.1f KB Lua heap", name, m.median * 1e6, m.p99 * 1e6, m.rate, m.mem.rss, m.mem.c, m.mem.heap)
  end
end
sim:stop()
os.execute("rm -rf " .. dir)

report("")
report("%-16s %10s %7s %10s %7s %10s %7s %9s %7s %9s", "store", "latency us", "x none", "p99 us", "x none",
  "events/s", "x none", "KB/bot", "x none", "Lua KB")
for _, r in ipairs(rows) do
  local name, m = r[1], r[2]
  report("%-16s %10.0f %7.2f %10.0f %7.2f %10.0f %7.2f %9.1f %7.2f %9.1f", name, m.median * 1e6,
    m.median / base.median, m.p99 * 1e6, m.p99 / base.p99, m.rate, m.rate / base.rate, m.mem.rss,
    m.mem.rss / base.mem.rss, m.mem.heap)
end
