-- What Redis's `appendfsync` costs the Redis store (issue 14), on a
-- redis-server of the bench's own: figures only, no pass/fail. A batch's
-- writes (inbox_put, then inbox_done) one after another, and 64 in flight,
-- under each `appendfsync` of an append-only Redis (and none: `appendonly
-- no`): writes/s and the median / 99th percentile of one write's round
-- trip. What the store costs a client (latency, events/s, memory per bot,
-- beside no store and SQLite) is bench/store_bench.lua's Redis rows.
local build = os.getenv("UCWA_BUILD") or "build"
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;bench/lib/?.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath

local ucwa = require "ucwa"
local R = require "support.redis_server"
local gettime = require("socket").gettime
local util = require "bench_util"
local report, wait_for, percentile = util.report, util.wait_for, util.percentile

local WRITES = tonumber(os.getenv("REDIS_BENCH_WRITES") or "4000")

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
