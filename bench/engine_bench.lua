-- Transport bench: figures only, no pass/fail.
--   1. round-trip latency of eng:request GET vs a bare libcurl easy-perform GET
--      (one easy handle, keep-alive) to the same local peer, in the same run
--   2. requests/second with many transfers in flight
--   3. event channel: batches/second through one channel vs the request round trip
--   4. memory per idle pending request (1,000 long polls held by the peer)
--   5. CPU used while idle with those pending
local build = os.getenv("UCWA_BUILD") or "build"
package.cpath = build .. "/?.so;" .. package.cpath
package.path = "spec/?.lua;" .. package.path

local core = require "ucwa.core"
local bench = require "ucwa_bench"       -- the libcurl baseline (bench/easy_bench.c)
local util = require "support.peer_util"
local monotime = util.monotime

-- Client and peer share one CPU when taskset is there: loopback round trips are
-- otherwise dominated by where the scheduler puts the two processes.
local pid = io.open("/proc/self/stat"):read("n")
local pinned = os.execute("taskset -pc 0 " .. pid .. " >/dev/null 2>&1")
local peer = util.start("peer_fast.lua")     -- inherits the affinity
local base = peer.base
local function report(fmt, ...) io.write(fmt:format(...), "\n") end
report("client and peer %s", pinned and "pinned to CPU 0" or "not pinned (no taskset)")

local ok, err = pcall(function()
  local eng = core.engine{ timeout = 30 }

  local function get(url)
    local done, resp
    eng:request{ url = url, callback = function(r, e) done, resp = true, r or e end }
    while not done do eng:step(1) end
    return resp
  end

  -- warm up: connections, allocator
  bench.easy_get(base .. "/ok", 200)
  for _ = 1, 200 do get(base .. "/ok") end

  -- 1. latency, interleaved rounds, best of
  local N, rounds = 2000, 5
  local best_easy, best_eng = math.huge, math.huge
  for _ = 1, rounds do
    best_easy = math.min(best_easy, bench.easy_get(base .. "/ok", N))
    local t0 = monotime()
    for _ = 1, N do get(base .. "/ok") end
    best_eng = math.min(best_eng, monotime() - t0)
  end
  report("latency: eng:request %.1f us, bare libcurl easy %.1f us per GET, ratio %.2f",
    best_eng / N * 1e6, best_easy / N * 1e6, best_eng / best_easy)

  -- 2. throughput with 64 in flight
  do
    local total, inflight, done, C = 20000, 0, 0, 64
    local issued = 0
    local function issue()
      issued = issued + 1
      inflight = inflight + 1
      eng:request{ url = base .. "/ok", callback = function()
        inflight = inflight - 1
        done = done + 1
      end }
    end
    local t0 = monotime()
    while done < total do
      while inflight < C and issued < total do issue() end
      eng:step(1)
    end
    local dt = monotime() - t0
    report("throughput: %d requests, %d in flight: %.0f requests/s", total, C, total / dt)
  end

  -- 3. event channel round trips
  do
    local n, target = 0, 3000
    local ch
    ch = eng:channel{ url = base .. "/app/events?ack=1", timeout = 60,
      on_batch = function()
        n = n + 1
        if n == target then ch:stop() end
      end,
      on_error = function(e) error("channel error: " .. tostring(e.code)) end }
    local t0 = monotime()
    ch:start()
    while n < target do eng:step(1) end
    local dt = monotime() - t0
    ch:close()
    report("channel: %d batches, %.1f us per batch (%.0f/s), %.2fx the request round trip",
      target, dt / target * 1e6, target / dt, dt / target / (best_eng / N))
  end

  -- 3b. many channels on one engine
  do
    local C, secs = 1000, 2
    local chans, count, bad = {}, 0, 0
    for i = 1, C do
      local last = 0
      chans[i] = eng:channel{ url = base .. "/app" .. i .. "/events?ack=1", timeout = 60,
        on_batch = function(b)
          count = count + 1
          local n = tonumber(b.links.self.href:match("ack=(%d+)"))
          if n ~= last + 1 then bad = bad + 1 end
          last = n
        end,
        on_error = function(e) error("channel error: " .. tostring(e.code)) end }
    end
    local t0 = monotime()
    for i = 1, C do chans[i]:start() end
    while monotime() - t0 < secs do eng:step(0.1) end
    for i = 1, C do chans[i]:close() end
    local dt = monotime() - t0
    report("channels: %d on one engine: %.0f batches/s aggregate, %d out of order",
      C, count / dt, bad)
  end

  -- 4 + 5. 1,000 idle long polls
  do
    local function rss()
      local f = io.open("/proc/self/statm")
      local _, res = f:read("n", "n")
      f:close()
      return res * 4096
    end
    local M = 1000
    -- a fresh engine (replacing eng); returns the heap and RSS baselines
    local function fresh()
      collectgarbage()
      collectgarbage()
      eng = core.engine{ timeout = 120 }
      return collectgarbage("count"), rss()
    end
    -- steps 1.5 s (connect and send everything); returns heap bytes and RSS KiB per item
    local function settle(kb0, rss0)
      local t0 = monotime()
      while monotime() - t0 < 1.5 do eng:step(0.1) end
      collectgarbage()
      collectgarbage()
      local kb1, rss1 = collectgarbage("count"), rss()
      return (kb1 - kb0) * 1024 / M, (rss1 - rss0) / 1024 / M
    end
    -- steps for 3 s; returns CPU seconds, wall seconds, wakeups
    local function idle()
      local steps = 0
      local c0, w0 = os.clock(), monotime()
      while monotime() - w0 < 3 do
        eng:step(1)
        steps = steps + 1
      end
      local cpu = os.clock() - c0
      return cpu, monotime() - w0, steps
    end

    eng:close()
    local kb0, rss0 = fresh()
    local finished = 0
    for i = 1, M do
      eng:request{ url = base .. "/hold/" .. i, headers = { Accept = "application/json" },
        callback = function() finished = finished + 1 end }
    end
    report("memory: %d pending requests: %.0f bytes Lua heap + %.1f KiB RSS (libcurl, sockets) each",
      M, settle(kb0, rss0))
    local cpu, wall, steps = idle()
    report("idle: %d pending for %.1f s: %.4f s CPU (%.2f%%), %d wakeups; %d finished early",
      M, wall, cpu, cpu / wall * 100, steps, finished)
    local c1 = monotime()
    eng:close()
    report("close with %d pending: %.1f ms", M, (monotime() - c1) * 1000)

    -- the same with 1,000 event channels waiting on the peer
    kb0, rss0 = fresh()
    local chans = {}
    for i = 1, M do
      chans[i] = eng:channel{ url = base .. "/hold/" .. i .. "/events?ack=1", timeout = 60,
        headers = { Authorization = "Bearer x", Accept = "application/json" },
        on_batch = function() end }
      chans[i]:start()
    end
    report("memory: %d waiting channels: %.0f bytes Lua heap + %.1f KiB RSS each", M, settle(kb0, rss0))
    cpu, wall, steps = idle()
    report("idle: %d waiting channels for %.1f s: %.4f s CPU (%.2f%%), %d wakeups",
      M, wall, cpu, cpu / wall * 100, steps)
    eng:close()
  end
end)

peer.stop()
if not ok then error(err, 0) end
