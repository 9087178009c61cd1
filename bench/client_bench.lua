-- Client bench against ucwa-sim: figures only, no pass/fail; ratios are
-- against baselines measured in the same run.
--   1. event latency: the simulator releasing an event (asked by a POST) to the
--      bot's Lua callback, against a bare libcurl GET round trip to the same server
--   2. events per second through one client's event channel
--   3. N applications (default 1,000) in one process sharing one engine, each
--      with a pending P-GET: memory per application and CPU used while idle
local build = os.getenv("UCWA_BUILD") or "build"
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath

local ucwa = require "ucwa"
local core = require "ucwa.core"
local bench = require "ucwa_bench"       -- the libcurl baseline (bench/easy_bench.c)
local gettime = require("socket").gettime
local N_APPS = tonumber(os.getenv("CLIENT_BENCH_APPS") or "1000")

local function report(fmt, ...) io.write(fmt:format(...), "\n"); io.flush() end

local function rss_kb(pid)
  local f = io.open("/proc/" .. (pid or "self") .. "/status")
  if not f then return 0 end
  local kb = f:read("a"):match("VmRSS:%s*(%d+)")
  f:close()
  return tonumber(kb) or 0
end

local function cpu_seconds(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return 0 end
  local stat = f:read("a")
  f:close()
  local fields = {}
  for v in stat:gsub("^.-%) ", ""):gmatch("%S+") do fields[#fields + 1] = v end
  return (tonumber(fields[12]) + tonumber(fields[13])) / 100  -- utime + stime, clock ticks
end

local function wait_for(step, pred, secs)
  local deadline = gettime() + secs
  while not pred() do
    if gettime() > deadline then error("bench timed out", 2) end
    step()
  end
end

local sim = require("ucwa.sim").start{ step_delay = 0, min_timeout = 0.1, app_idle = 3600 }
local ok, err = pcall(function()
  -- 1 and 2: one client
  local client = ucwa.client{ url = sim.url, username = "bot@contoso.com", password = "password" }
  local ready, received = false, 0
  client:on("ready", function() ready = true end)
  client:on("event", function(ev) if ev.link and ev.link.rel == "note" then received = received + 1 end end)
  client:start()
  wait_for(function() client:step(0.01) end, function() return ready end, 10)
  local _, st = sim:control("GET", "/_sim/state")
  local events_url = ("%s/_sim/apps/%d/events"):format(sim.base, st.applications[1].id)
  local eng = client.engine

  local cjson = require "cjson"
  -- Asks the simulator to release `count` events; on_answer(released_at) with
  -- the simulator's wall clock at the release.
  local function release(count, on_answer)
    eng:request{ method = "POST", url = events_url, headers = { ["Content-Type"] = "application/json" },
                 body = ('{"count":%d}'):format(count), callback = function(r)
                   if on_answer then on_answer(cjson.decode(r.body).released_at) end
                 end }
  end

  local function median(list)
    table.sort(list)
    return list[#list // 2 + 1]
  end

  -- 1. release -> callback, for the client and for a raw long poll (below)
  local rounds, lat = 300, {}
  local t_event
  client:on("event", function(ev) if ev.link and ev.link.rel == "note" then t_event = gettime() end end)
  for i = 1, rounds do
    client:step(0.003)                      -- let the next P-GET settle at the server
    local released
    t_event = nil
    release(1, function(at) released = at end)
    while not (t_event and released) do client:step(1) end
    lat[i] = t_event - released
  end
  local client_lat = median(lat)
  local root = sim.base .. "/autodiscover/autodiscoverservice.svc/root"
  bench.easy_get(root, 100)
  local bare = math.huge
  for _ = 1, 5 do bare = math.min(bare, bench.easy_get(root, 300) / 300) end
  report("event latency: median %.0f us from the simulator's release to the Lua callback; "
    .. "bare libcurl GET round trip %.0f us; ratio %.2f", client_lat * 1e6, bare * 1e6, client_lat / bare)

  -- what the client itself spends on a one-event batch: parse and dispatch
  do
    local app = "/ucwa/oauth/v1/applications/1"
    local body = cjson.encode{
      _links = { self = { href = app .. "/events?ack=5" }, next = { href = app .. "/events?ack=6" } },
      sender = { { rel = "me", href = app .. "/me",
        events = { { link = { rel = "note", href = app .. "/me/note", title = "5" }, type = "updated" } } } } }
    local n, t0 = 20000, os.clock()
    local registry = client._session.registry -- white box: what the channel hands a batch to
    for _ = 1, n do registry:dispatch(core.parse_events(body, "application/json")) end
    report("  parse_events + dispatch of a one-event batch: %.1f us (CPU)", (os.clock() - t0) / n * 1e6)
  end

  local total = 20000
  local start, t0 = received, gettime()
  for _ = 1, total // 1000 do release(1000) end
  wait_for(function() client:step(0.05) end, function() return received - start >= total end, 60)
  local dt = gettime() - t0
  report("events through one client: %d in %.2f s, %.0f events/s", total, dt, total / dt)
  -- the same release answered to a raw long poll (engine request, no channel, parse or dispatch)
  local session = client._session -- white box: the session's channel and token
  local url = session.channel:url()
  session.channel:stop()
  local raw = {}
  for i = 1, rounds do
    local got, released
    eng:request{ url = url, timeout = 30, callback = function(r) got = { r, gettime() } end,
                 headers = { Authorization = session.tokens:authorization(url), Accept = "application/json" } }
    client:step(0.003)
    release(1, function(at) released = at end)
    while not (got and released) do client:step(1) end
    raw[i] = got[2] - released
    url = core.url_resolve(url, cjson.decode(got[1].body)._links.next.href)
  end
  local raw_lat = median(raw)
  report("  the same release to a raw long-poll GET: median %.0f us; the client's own cost: ratio %.2f",
    raw_lat * 1e6, client_lat / raw_lat)
  client:close()

  -- 3: many applications, one engine
  collectgarbage(); collectgarbage()
  local shared = ucwa.engine{}
  local rss0, lua0 = rss_kb(), collectgarbage("count")
  local sim_rss0 = rss_kb(sim.pid)
  local clients, n_ready = {}, 0
  for i = 1, N_APPS do
    local c = ucwa.client{ url = sim.url, username = "bot@contoso.com", password = "password", engine = shared,
                           available = false }
    c:on("ready", function() n_ready = n_ready + 1 end)
    c:start()
    clients[i] = c
  end
  local t_sign = gettime()
  wait_for(function() shared:step(0.05) end, function() return n_ready == N_APPS end, 300)
  t_sign = gettime() - t_sign
  for _ = 1, 20 do shared:step(0.01) end
  collectgarbage(); collectgarbage()
  local rss1, lua1 = rss_kb(), collectgarbage("count")
  _, st = sim:control("GET", "/_sim/state")
  report("applications: %d signed in in %.1f s; %d P-GETs held by the simulator", N_APPS, t_sign, st.pgets_held)
  report("memory per application: %.1f KB (process RSS), of which Lua heap %.1f KB; goal 64 KB",
    (rss1 - rss0) / N_APPS, (lua1 - lua0) / N_APPS)
  report("simulator memory per application: %.1f KB", (rss_kb(sim.pid) - sim_rss0) / N_APPS)
  local me = io.open("/proc/self/stat"):read("n")
  local c0, s0, w0 = cpu_seconds(me), cpu_seconds(sim.pid), gettime()
  local wakeups = 0
  while gettime() - w0 < 3 do wakeups = wakeups + shared:step(1) end
  local wall = gettime() - w0
  report("idle with %d pending P-GETs for %.1f s: client CPU %.1f%%, simulator CPU %.1f%%, %d callbacks",
    N_APPS, wall, (cpu_seconds(me) - c0) / wall * 100, (cpu_seconds(sim.pid) - s0) / wall * 100, wakeups)
  for _, c in ipairs(clients) do c._stepping = true; c:close() end  -- no blocking DELETE one by one
  shared:close()
end)
sim:stop()
if not ok then error(err, 0) end
