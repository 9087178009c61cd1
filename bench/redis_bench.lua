-- The cost of the Redis store (issue 14), against ucwa-sim and a
-- redis-server of the bench's own: figures only, no pass/fail.
--   1. the store alone: a batch's writes (inbox_put, then inbox_done) one
--      after another, and 64 in flight, under each `appendfsync` of an
--      append-only Redis (and none: `appendonly no`): writes/s and the
--      median / 99th percentile of one write's round trip;
--   2. through a client: the event latency (the simulator's release of one
--      event to the bot's Lua callback, median and p99 of
--      REDIS_BENCH_ROUNDS, default 300) and events per second (20,000
--      released 1,000 at a time), with no store and with Redis (everysec),
--      side by side in one run.
-- The SQLite rows of the same figures are bench/store_bench.lua's.
local build = os.getenv("UCWA_BUILD") or "build"
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath

local ucwa = require "ucwa"
local cjson = require "cjson"
local R = require "support.redis_server"
local gettime = require("socket").gettime

local ROUNDS = tonumber(os.getenv("REDIS_BENCH_ROUNDS") or "300")
local WRITES = tonumber(os.getenv("REDIS_BENCH_WRITES") or "4000")
local TOTAL = 20000

local function report(fmt, ...) io.write(fmt:format(...), "\n"); io.flush() end

local function percentile(list, p)
  table.sort(list)
  return list[math.max(1, math.ceil(#list * p))]
end

local function wait_for(step, pred, secs)
  local deadline = gettime() + secs
  while not pred() do
    if gettime() > deadline then error("bench timed out", 2) end
    step()
  end
end

-- 1. the store's writes -------------------------------------------------------

local BATCH = string.rep("x", 600) -- about one event's batch, JSON
local CHANNEL = '{"url":"https://pool/ucwa/v1/applications/1/events?ack=9","ack":9}'

local function store_writes(srv)
  local eng = ucwa.engine()
  local s = require("ucwa.store_redis").new{ port = srv.port, engine = eng, lease = 60 }
  local fence
  s:begin("bench", function(f) fence = f end)
  wait_for(function() eng:step(0.01) end, function() return fence end, 10)
  -- one at a time: each write's round trip
  local lat, seq = {}, 0
  local t0 = gettime()
  for i = 1, WRITES // 4 do
    seq = seq + 1
    local t, done = gettime(), false
    s:inbox_put("bench", fence, seq, BATCH, { channel = CHANNEL }, function(ok) done = assert(ok) end)
    while not done do eng:step(1) end
    lat[i] = gettime() - t
    done = false
    s:inbox_done("bench", fence, seq, function(ok) done = assert(ok) end)
    while not done do eng:step(1) end
  end
  local serial = (WRITES // 2) / (gettime() - t0)
  -- 64 in flight
  local inflight, left = 0, WRITES
  t0 = gettime()
  local function more()
    while inflight < 64 and left > 0 do
      left, inflight, seq = left - 1, inflight + 1, seq + 1
      s:inbox_put("bench", fence, seq, BATCH, { channel = CHANNEL }, function(ok)
        assert(ok)
        inflight = inflight - 1
      end)
    end
  end
  while left > 0 or inflight > 0 do
    more()
    eng:step(1)
  end
  local pipelined = WRITES / (gettime() - t0)
  s:close()
  eng:close()
  return { serial = serial, pipelined = pipelined, median = percentile(lat, 0.5), p99 = percentile(lat, 0.99) }
end

local MODES = {
  { "appendonly no", {} },
  { "appendfsync no", { "--appendonly", "yes", "--appendfsync", "no" } },
  { "appendfsync everysec", { "--appendonly", "yes", "--appendfsync", "everysec" } },
  { "appendfsync always", { "--appendonly", "yes", "--appendfsync", "always" } },
}

report("%-22s %14s %14s %12s %10s", "redis", "writes/s (1)", "writes/s (64)", "median us", "p99 us")
for _, m in ipairs(MODES) do
  local srv = R.start{ args = m[2] }
  local r = store_writes(srv)
  srv:stop()
  report("%-22s %14.0f %14.0f %12.0f %10.0f", m[1], r.serial, r.pipelined, r.median * 1e6, r.p99 * 1e6)
end

-- 2. through a client ---------------------------------------------------------

local function measure(sim, store)
  local eng = ucwa.engine{}
  local c = ucwa.client{ url = sim.url, username = "bot@contoso.com", password = "password", engine = eng,
                         store = store, store_key = store and "bench-client" or nil }
  local ready = false
  c:on("ready", function() ready = true end)
  c:on("restored", function() ready = true end)
  c:start()
  wait_for(function() eng:step(0.01) end, function() return ready end, 30)
  local _, st = sim:control("GET", "/_sim/state")
  local app
  for _, a in ipairs(st.applications) do if a.href == c.application.href then app = a.id end end
  local url = ("%s/_sim/apps/%d/events"):format(sim.base, app)
  local function release(count, on_answer)
    eng:request{ method = "POST", url = url, headers = { ["Content-Type"] = "application/json" },
                 body = ('{"count":%d}'):format(count), callback = function(r)
                   if on_answer then on_answer(cjson.decode(r.body).released_at) end
                 end }
  end
  local got = { received = 0 } -- got.at: when the last event reached the callback
  c:on("event", function(ev)
    if ev.link and ev.link.rel == "note" then got.at = gettime(); got.received = got.received + 1 end
  end)
  local lat = {}
  for i = 1, ROUNDS do
    eng:step(0.003) -- the next P-GET settles at the server
    local released
    got.at = nil
    release(1, function(at) released = at end)
    while not (got.at and released) do eng:step(1) end
    lat[i] = got.at - released
  end
  got.received = 0
  local t0 = gettime()
  for _ = 1, TOTAL // 1000 do release(1000) end
  wait_for(function() eng:step(0.05) end, function() return got.received >= TOTAL end, 120)
  local rate = TOTAL / (gettime() - t0)
  c:release()
  eng:close()
  return { median = percentile(lat, 0.5), p99 = percentile(lat, 0.99), rate = rate }
end

local sim = require("ucwa.sim").start{ step_delay = 0, min_timeout = 0.1, min_aggregation = 0, app_idle = 3600 }
local srv = R.start{ args = { "--appendonly", "yes", "--appendfsync", "everysec" } }
local rows = {
  { "no store", measure(sim, nil) },
  { "redis everysec", measure(sim, require("ucwa.store_redis").new{ port = srv.port }) },
}
srv:stop()
sim:stop()
report("")
report("%-16s %12s %8s %12s %8s %12s %8s", "store", "latency us", "x none", "p99 us", "x none", "events/s", "x none")
local base = rows[1][2]
for _, r in ipairs(rows) do
  local m = r[2]
  report("%-16s %12.0f %8.2f %12.0f %8.2f %12.0f %8.2f", r[1], m.median * 1e6, m.median / base.median,
    m.p99 * 1e6, m.p99 / base.p99, m.rate, m.rate / base.rate)
end
