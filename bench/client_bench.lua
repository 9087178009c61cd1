-- Client bench against ucwa-sim (issue 16's table): figures only, no
-- pass/fail; every ratio is against a baseline measured in the same run.
--   1. event latency, the simulator's release to the bot's Lua callback, against
--      a raw long-poll GET (eng:request, no channel, parse or dispatch) on the
--      same server, rounds interleaved; and the raw long poll against a plain
--      bare-libcurl GET round trip (the simulator's own share)
--   2. events per second through one client's event channel
--   3. N bots (default 1,000; CLIENT_BENCH_APPS=N, or BENCH_10K=1 for 1,000
--      then 10,000) signing in on one shared engine, each left with a pending
--      P-GET: sign-in time and where it goes (client and simulator CPU), memory
--      per bot (RSS, C+Lua heap in use, Lua heap) against a bare libcurl GET held
--      pending (bench.hold), idle CPU and wake-ups
--   4. the same over TLS (ucwa-sim --cert/--key): event latency and memory per
--      bot (CLIENT_BENCH_TLS_APPS, default 1,000; 0 skips it)
--   5. the parse ratios (bench/parse_bench.lua, run from here), so that the
--      summary holds every figure of the issue's table from one run
local build = os.getenv("UCWA_BUILD") or "build"
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;bench/lib/?.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath

local ucwa = require "ucwa"
local core = require "ucwa.core"
local cjson = require "cjson"
local bench = require "ucwa_bench" -- the libcurl baseline (bench/easy_bench.c)
local util = require "support.peer_util"
local gettime = require("socket").gettime
local bench_util = require "bench_util"
local report, wait_for = bench_util.report, bench_util.wait_for
local proc_status, rss_kb = bench_util.proc_status, bench_util.rss_kb

local RUNS = os.getenv("BENCH_10K") and { 1000, 10000 } or { tonumber(os.getenv("CLIENT_BENCH_APPS") or "1000") }
local N_TLS = tonumber(os.getenv("CLIENT_BENCH_TLS_APPS") or "1000")
local ROUNDS = tonumber(os.getenv("CLIENT_BENCH_ROUNDS") or "300")

local function cpu_seconds(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return 0 end
  local stat = f:read("a")
  f:close()
  local fields = {}
  for v in stat:gsub("^.-%) ", ""):gmatch("%S+") do fields[#fields + 1] = v end
  return (tonumber(fields[12]) + tonumber(fields[13])) / 100 -- utime + stime, clock ticks
end

local ME = io.open("/proc/self/stat"):read("n")

local function median(list)
  table.sort(list)
  return list[#list // 2 + 1]
end

local summary = {}
local function row(what, figure, baseline, ratio, goal)
  summary[#summary + 1] = { what, figure, baseline or "", ratio and ("%.2f"):format(ratio) or "", goal or "" }
end

-- Two clients on one engine: A keeps its event channel, B's is stopped and
-- its events URL is long-polled raw. Returns what the rounds measured.
local function latency(sim, eng_opts, bare_url)
  local eng = ucwa.engine(eng_opts)
  local function new_client() return bench_util.signed_in(eng, { url = sim.url }, 20) end
  local a, b = new_client(), new_client()
  local _, st = sim:control("GET", "/_sim/state")
  local apps = st.applications
  local function events_url(i) return ("%s/_sim/apps/%d/events"):format(sim.base, apps[i].id) end
  local a_events, b_events = events_url(#apps - 1), events_url(#apps)

  local function release(url, count, on_answer) bench_util.release(eng, url, count, on_answer) end

  local t_event
  a:on("event", function(ev) if ev.link and ev.link.rel == "note" then t_event = gettime() end end)
  local session = b._session -- white box: the session's channel and token
  local url = session.channel:url()
  session.channel:stop()
  local auth = session.tokens:authorization(url)

  local client_lat, raw_lat, bare_lat = {}, {}, {}
  if bare_url then bench.easy_get(bare_url, 50) end
  for i = 1, ROUNDS do
    -- the client: release -> its Lua event callback
    eng:step(0.003) -- let the next P-GET settle at the server
    local released
    t_event = nil
    release(a_events, 1, function(at) released = at end)
    while not (t_event and released) do eng:step(1) end
    client_lat[i] = t_event - released
    -- a raw long-poll GET on B's channel URL: release -> its callback
    local got
    released = nil
    eng:request{ url = url, timeout = 30, callback = function(r) got = { r, gettime() } end,
                 headers = { Authorization = auth, Accept = "application/json" } }
    eng:step(0.003)
    release(b_events, 1, function(at) released = at end)
    while not (got and released) do eng:step(1) end
    raw_lat[i] = got[2] - released
    url = core.url_resolve(url, cjson.decode(got[1].body)._links.next.href)
    -- a plain bare-libcurl GET round trip to the same server
    if bare_url then bare_lat[i] = bench.easy_get(bare_url, 3) / 3 end
  end

  -- what the client itself spends on a one-event batch: parse and dispatch
  local body = cjson.encode{
    _links = { self = { href = "/a/events?ack=5" }, next = { href = "/a/events?ack=6" } },
    sender = { { rel = "me", href = "/a/me",
      events = { { link = { rel = "note", href = "/a/me/note", title = "5" }, type = "updated" } } } } }
  local n, t0 = 20000, os.clock()
  local registry = a._session.registry -- white box: what the channel hands a batch to
  for _ = 1, n do registry:dispatch(core.parse_events(body, "application/json")) end
  local parse_dispatch = (os.clock() - t0) / n

  -- events through one client
  local received = 0
  a:on("event", function(ev) if ev.link and ev.link.rel == "note" then received = received + 1 end end)
  local total = 20000
  t0 = gettime()
  for _ = 1, total // 1000 do release(a_events, 1000) end
  wait_for(function() eng:step(0.05) end, function() return received >= total end, 60)
  local rate = total / (gettime() - t0)

  a:close()
  b:close()
  eng:close()
  return { client = median(client_lat), raw = median(raw_lat), bare = bare_url and median(bare_lat),
           parse_dispatch = parse_dispatch, rate = rate }
end

-- n bots signing in on one shared engine; figures per bot
local first_error
local function many(sim, n, eng_opts, client_opts)
  collectgarbage()
  collectgarbage()
  local shared = ucwa.engine(eng_opts)
  local rss0, lua0, heap0 = rss_kb(), collectgarbage("count"), bench.heap()
  local sim_rss0 = rss_kb(sim.pid)
  local clients, n_ready, failed = {}, 0, {}
  local c0, s0, t0 = cpu_seconds(ME), cpu_seconds(sim.pid), gettime()
  for i = 1, n do
    local o = { url = sim.url, username = "bot@contoso.com", password = "password", engine = shared,
                available = false }
    for k, v in pairs(client_opts or {}) do o[k] = v end
    local c = ucwa.client(o)
    c:on("ready", function() n_ready = n_ready + 1 end)
    c:on("error", function(e) -- a failed sign-in attempt: the client retries it
      local k = tostring(e.code) .. (e.subcode and "/" .. e.subcode or "")
      failed[k] = (failed[k] or 0) + 1
      if not first_error then first_error = tostring(e) .. (e.retrying and " (retrying)" or " (not retried)") end
    end)
    c:start()
    clients[i] = c
  end
  local last = gettime()
  wait_for(function()
    shared:step(0.05)
    if gettime() - last > 10 then
      last = gettime()
      local f = ""
      for k, v in pairs(failed) do f = f .. (" %s x%d"):format(k, v) end
      report("  ... %d of %d ready after %.0f s; failed attempts:%s", n_ready, n, last - t0, f)
    end
  end, function() return n_ready == n end, tonumber(os.getenv("CLIENT_BENCH_SIGNIN_MAX") or "300"))
  if first_error then report("  first failed attempt: %s", first_error) end
  local r = { n = n, signin = gettime() - t0, client_cpu = cpu_seconds(ME) - c0,
              sim_cpu = cpu_seconds(sim.pid) - s0, failed = "" }
  for k, v in pairs(failed) do r.failed = r.failed .. (" %s x%d"):format(k, v) end
  for _ = 1, 20 do shared:step(0.01) end
  collectgarbage()
  collectgarbage()
  r.rss = (rss_kb() - rss0) / n
  r.lua = (collectgarbage("count") - lua0) / n
  r.heap = (bench.heap() - heap0) / 1024 / n
  bench.trim() -- what the allocator keeps of the sign-in's transient peak, given back
  r.rss_trimmed = (rss_kb() - rss0) / n
  r.sim_rss = (rss_kb(sim.pid) - sim_rss0) / n
  local _, st = sim:control("GET", "/_sim/state")
  r.held = st.pgets_held
  -- idle: every wake-up of the process while the P-GETs wait, once the
  -- sign-in's transfers are 11 s old: libcurl keeps each one's connect
  -- timeout (10 s) in its timer tree, and those fire once each, with no
  -- work, for 10 s after the last connection (700 wake-ups a second right
  -- after 10,000 sign-ins, none after)
  local settle = gettime()
  while gettime() - settle < 11 do shared:step(0.5) end
  local cpu0, w0, vcs0 = cpu_seconds(ME), gettime(), proc_status(nil, "voluntary_ctxt_switches")
  local steps, delivered = 0, 0
  while gettime() - w0 < 3 do
    delivered = delivered + shared:step(math.max(0.001, 3 - (gettime() - w0)))
    steps = steps + 1
  end
  local wall = gettime() - w0
  r.idle_cpu = (cpu_seconds(ME) - cpu0) / wall * 100
  r.wakeups = steps - 1 -- the last step is the one that timed out
  r.vcs = proc_status(nil, "voluntary_ctxt_switches") - vcs0 - 1
  r.delivered = delivered
  for _, c in ipairs(clients) do c._stepping = true; c:close() end -- no blocking DELETE one by one
  shared:close()
  return r
end

-- the baseline of memory: a bare libcurl GET held pending by a peer
local peer = util.start("peer_fast.lua")
local function hold_baseline(n)
  collectgarbage()
  collectgarbage()
  local rss0, heap0 = rss_kb(), bench.heap()
  local running = bench.hold(peer.base .. "/hold/x", n, 1.5)
  local r = { rss = (rss_kb() - rss0) / n, heap = (bench.heap() - heap0) / 1024 / n, running = running }
  bench.release()
  return r
end

local ok, err = pcall(function()
  -- HTTP
  local sim = require("ucwa.sim").start{ step_delay = 0, min_timeout = 0.1, app_idle = 3600 }
  local fine, e = pcall(function()
    local root = sim.base .. "/autodiscover/autodiscoverservice.svc/root"
    local l = latency(sim, {}, root)
    report("event latency: median %.0f us from the simulator's release to the Lua callback; a raw long-poll GET "
      .. "%.0f us (ratio %.2f, the client's own cost); a plain bare-libcurl GET %.0f us (raw long poll / plain "
      .. "GET %.2f, the simulator's)", l.client * 1e6, l.raw * 1e6, l.client / l.raw, l.bare * 1e6, l.raw / l.bare)
    report("  parse_events + dispatch of a one-event batch: %.1f us (CPU)", l.parse_dispatch * 1e6)
    report("events through one client: %.0f events/s", l.rate)
    row("event latency, client / raw long-poll GET (HTTP)", ("%.0f us"):format(l.client * 1e6),
      ("%.0f us"):format(l.raw * 1e6), l.client / l.raw, "<= 1.2")
    row("ucwa-sim: release -> raw long poll / plain GET", ("%.0f us"):format(l.raw * 1e6),
      ("%.0f us"):format(l.bare * 1e6), l.raw / l.bare, "<= 1.3")

    for _, n in ipairs(RUNS) do
      local base = hold_baseline(math.min(n, 1000)) -- per handle, the same at any count
      report("baseline: %d bare libcurl GETs held pending (libcurl defaults): %.1f KB RSS, %.1f KB heap each "
        .. "(%d running)", math.min(n, 1000), base.rss, base.heap, base.running)
      -- a simulator of its own: the apps of a run before count against the
      -- user's 10,000 (Gone/TooManyApplications, not retried)
      local rsim = require("ucwa.sim").start{ step_delay = 0, min_timeout = 0.1, app_idle = 3600 }
      local done, r = pcall(many, rsim, n, {})
      rsim:stop()
      if not done then error(r, 0) end
      report("bots: %d signed in in %.1f s (client CPU %.1f s, simulator CPU %.1f s); %d P-GETs held%s",
        n, r.signin, r.client_cpu, r.sim_cpu, r.held, r.failed ~= "" and "; attempts that failed:" .. r.failed or "")
      report("  memory per bot: %.1f KB RSS (%.1f KB after malloc_trim), C+Lua heap in use %.1f KB, of which "
        .. "Lua heap %.1f KB; heap / a bare pending GET's %.2f", r.rss, r.rss_trimmed, r.heap, r.lua,
        r.heap / base.heap)
      report("  simulator memory per bot: %.1f KB", r.sim_rss)
      report("  idle with %d pending P-GETs for 3 s: client CPU %.2f%%, %d wake-ups (%d context switches), "
        .. "%d callbacks", n, r.idle_cpu, r.wakeups, r.vcs, r.delivered)
      row(("memory per bot, %d bots (RSS; heap in use)"):format(n), ("%.1f KB; %.1f KB"):format(r.rss, r.heap),
        ("%.1f KB heap, bare GET"):format(base.heap), r.heap / base.heap, "<= 16 KB")
      row(("signing in %d bots (client CPU, sim CPU)"):format(n),
        ("%.1f s (%.1f s, %.1f s)"):format(r.signin, r.client_cpu, r.sim_cpu), "", nil,
        n >= 10000 and "<= 15 s" or "")
      row(("idle, %d bots, 3 s: CPU, wake-ups"):format(n), ("%.2f %%, %d"):format(r.idle_cpu, r.wakeups), "",
        nil, "0.0 %, 0")
    end
  end)
  sim:stop()
  if not fine then error(e, 0) end

  -- TLS
  if N_TLS > 0 and os.execute("command -v openssl >/dev/null 2>&1") then
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
    assert(os.execute("env -u LD_PRELOAD openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1"
      .. " -addext subjectAltName=IP:127.0.0.1 -keyout " .. key .. " -out " .. cert .. " >/dev/null 2>&1"))
    local tsim = require("ucwa.sim").start{ step_delay = 0, min_timeout = 0.1, app_idle = 3600, cert = cert,
                                            key = key }
    fine, e = pcall(function()
      local l = latency(tsim, { ca_file = cert })
      report("TLS event latency: median %.0f us to the Lua callback; a raw long-poll GET %.0f us; ratio %.2f",
        l.client * 1e6, l.raw * 1e6, l.client / l.raw)
      row("event latency, client / raw long-poll GET (TLS)", ("%.0f us"):format(l.client * 1e6),
        ("%.0f us"):format(l.raw * 1e6), l.client / l.raw, "<= 1.2")
      local base = hold_baseline(math.min(N_TLS, 1000))
      local r = many(tsim, N_TLS, { ca_file = cert })
      report("TLS bots: %d signed in in %.1f s (client CPU %.1f s, simulator CPU %.1f s)%s", N_TLS, r.signin,
        r.client_cpu, r.sim_cpu, r.failed ~= "" and "; attempts that failed:" .. r.failed or "")
      report("  memory per bot: %.1f KB RSS (%.1f KB after malloc_trim), C+Lua heap in use %.1f KB, of which "
        .. "Lua heap %.1f KB", r.rss, r.rss_trimmed, r.heap, r.lua)
      report("  idle: client CPU %.2f%%, %d wake-ups", r.idle_cpu, r.wakeups)
      row(("memory per bot, %d bots over TLS (RSS; heap in use)"):format(N_TLS),
        ("%.1f KB; %.1f KB"):format(r.rss, r.heap), ("%.1f KB heap, bare HTTP GET"):format(base.heap),
        r.heap / base.heap,
        "stated")
    end)
    tsim:stop()
    os.execute("rm -rf " .. dir)
    if not fine then error(e, 0) end
  end
end)
peer.stop()
if not ok then error(err, 0) end

-- the parse ratios of the issue's table, measured now by bench/parse_bench.lua
-- (its own process: its timing loops undisturbed by this one's heap), so the
-- summary holds every figure of one run (CLIENT_BENCH_PARSE=0 skips them)
if os.getenv("CLIENT_BENCH_PARSE") ~= "0" then
  local lua = arg[-1] or "lua5.4"
  local p = io.popen(("UCWA_BUILD=%s %s bench/parse_bench.lua 2>&1"):format(build, lua))
  for line in p:lines() do
    local what, fig, base, ratio = line:match("^parse (onlineMeetingInvitation %u+)%s+([%d.]+) us%s+baseline%s+([%d.]+)"
      .. " us%s+ratio ([%d.]+)x")
    if what then
      local json = what:match("JSON$") ~= nil
      row("ucwa.parse " .. what .. (json and " / cjson.decode" or " / bare expat"), fig .. " us", base .. " us",
        tonumber(ratio), json and "<= 1.1" or "<= 1.15")
    end
  end
  p:close()
end

report("\nsummary (issue 16): every ratio against its baseline of this run")
report("%-52s %-26s %-22s %-6s %s", "what", "figure", "baseline", "ratio", "goal")
for _, r in ipairs(summary) do report("%-52s %-26s %-22s %-6s %s", r[1], r[2], r[3], r[4], r[5]) end
