-- The soak: SOAK_BOTS (100) bots in one process on one shared engine against
-- ucwa-sim for SOAK_SECONDS (60) with random faults from the control API
-- (dropped P-GETs, 5xx bursts, delays, 401s on the event channel, resync,
-- resume, forget, token expiry, SIGSTOP/SIGCONT of the simulator), while
-- synthetic events are sent to random bots. Every event each bot sees is
-- counted against what the simulator sent; RSS and CPU are sampled.
--
--   make soak                 (SOAK_SECONDS=60; CI runs SOAK_SECONDS=15)
--   UCWA_BUILD=build lua5.4 tools/soak.lua
--
-- Environment: SOAK_SECONDS, SOAK_BOTS, SOAK_RATE (events per second sent,
-- default 5000), SOAK_SEED (the random seed; printed, so a run can be
-- repeated as far as timing allows), SOAK_RSS_MB (the RSS growth bound,
-- default below), SOAK_DRAIN (seconds allowed after the faults stop for
-- every bot to be ready and every event to arrive, default 60), SOAK_VERBOSE=1
-- (each fault as it is applied).
--
-- Exactly once, except where the protocol says otherwise: a `resume` resets
-- the application's state at the server and a forgotten application is gone,
-- so the events the server held at that moment may never be delivered. For
-- each resume or forget of an application the soak notes the window
-- (highest sequence number the bot had seen, highest the simulator had sent]:
-- events of that window that never arrive are counted as "documented"
-- losses. Every other missing event is a loss, every event seen twice a
-- duplicate, and either fails the soak (exit 1). So does a bot that is not
-- "ready" at the end, an event delivered to another bot, or RSS growth past
-- the bound.
--
-- The RSS bound, 8 MB (SOAK_RSS_MB): RSS is taken after sign-in and a 2 s
-- warm-up with events (the start) and after the drain (the end), each after
-- a full garbage collection, so the working set of 100 bots (~4 MB, 40 KB
-- each in `make bench`), libcurl's connection cache and the allocator's
-- arenas are in both. What the soak itself keeps is a few intervals per
-- application, not an entry per event. Measured growth is 0.3-0.6 MB over
-- 60 s (~170,000 events, ~60 faults); 8 MB is more than ten times that, and
-- less than a leak of ~50 bytes per event would add over a 60 s run (or of
-- ~200 bytes per event over the 15 s one): a table, a string or a closure
-- per event or per batch is caught. The samples taken during the run are
-- printed too, so a slope shows even below the bound.
local build = os.getenv("UCWA_BUILD") or "build"
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath

local ucwa = require "ucwa"
local simmod = require "ucwa.sim"
local gettime = require("socket").gettime

local function env_number(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  local n = tonumber(v)
  if not n then error(name .. " must be a number, not '" .. v .. "'", 0) end
  return n
end

local SECONDS = env_number("SOAK_SECONDS", 60)
local BOTS = math.tointeger(env_number("SOAK_BOTS", 100))
local RATE = env_number("SOAK_RATE", 5000)
local SEED = math.tointeger(env_number("SOAK_SEED", os.time() % 1000000))
local RSS_BOUND_MB = env_number("SOAK_RSS_MB", 8)
local DRAIN = env_number("SOAK_DRAIN", 60)
local VERBOSE = os.getenv("SOAK_VERBOSE") == "1"
local WARMUP = 2

math.randomseed(SEED)

local function say(fmt, ...) io.write(fmt:format(...), "\n"); io.flush() end
local t0 = gettime()
local function note(fmt, ...) if VERBOSE then say("  %7.2f " .. fmt, gettime() - t0, ...) end end

-- /proc figures ---------------------------------------------------------------

local function rss_kb(pid)
  local f = io.open("/proc/" .. (pid or "self") .. "/status")
  if not f then return 0 end
  local kb = f:read("a"):match("VmRSS:%s*(%d+)")
  f:close()
  return tonumber(kb) or 0
end

local CLK_TCK = 100 -- USER_HZ on Linux
local function cpu_seconds(pid)
  local f = io.open("/proc/" .. (pid or "self") .. "/stat")
  if not f then return 0 end
  local stat = f:read("a")
  f:close()
  local fields = {}
  for v in stat:gsub("^.-%) ", ""):gmatch("%S+") do fields[#fields + 1] = v end
  return (tonumber(fields[12]) + tonumber(fields[13])) / CLK_TCK -- utime + stime
end

-- Sets of sequence numbers as sorted disjoint intervals: a few per
-- application, whatever the number of events (events arrive in order).
local Intervals = {}
Intervals.__index = Intervals

local function intervals() return setmetatable({ n = 0 }, Intervals) end

-- Adds k; false if it was there already.
function Intervals:add(k)
  local n = self.n
  local last = self[n]
  if last and k == last[2] + 1 then last[2] = k; return true end -- the usual case
  if not last or k > last[2] + 1 then self[n + 1] = { k, k }; self.n = n + 1; return true end
  for i = 1, n do
    local iv = self[i]
    if k >= iv[1] and k <= iv[2] then return false end
    if k == iv[1] - 1 then iv[1] = k; return true end
    if k == iv[2] + 1 then
      iv[2] = k
      local nx = self[i + 1]
      if nx and nx[1] == k + 1 then iv[2] = nx[2]; table.remove(self, i + 1); self.n = n - 1 end
      return true
    end
    if k < iv[1] then table.insert(self, i, { k, k }); self.n = n + 1; return true end
  end
  error("unreachable")
end

function Intervals:has(k)
  for i = 1, self.n do
    local iv = self[i]
    if k >= iv[1] and k <= iv[2] then return true end
  end
  return false
end

function Intervals:max() return self.n > 0 and self[self.n][2] or 0 end

-- How many of lo..hi are in the set.
function Intervals:count_in(lo, hi)
  local c = 0
  for i = 1, self.n do
    local a, b = math.max(lo, self[i][1]), math.min(hi, self[i][2])
    if a <= b then c = c + b - a + 1 end
  end
  return c
end

-- The simulator -------------------------------------------------------------

-- helpers.sim's test-friendly timings (spec/helpers.lua); applications never
-- expire during the run.
local sim = simmod.start{ step_delay = 0.01, min_timeout = 0.1, min_aggregation = 0, pget_timeout = 2,
                          app_idle = 3600, auto_admit = true }
local stopped = false   -- the simulator is SIGSTOPped
local function signal(sig)
  assert(os.execute(("kill -%s %d"):format(sig, sim.pid)), "kill -" .. sig .. " failed")
end

local function control(method, path, body)
  assert(not stopped, "control request to a stopped simulator")
  local status, answer = sim:control(method, path, body)
  if not status then error("control " .. method .. " " .. path .. ": " .. tostring(answer), 2) end
  return status, answer
end

-- The bots ------------------------------------------------------------------

local eng = ucwa.engine{}
local bots = {}            -- i -> { client=, user=, app= (current application id, a string) }
local by_user = {}
local apps = {}            -- application id -> { bot=, sent=, sent_high=, seen=, dups=, windows={} }
local totals = { sent = 0, seen = 0, dups = 0, misrouted = 0, foreign = 0 }
local errors_by = {}       -- "code/subcode" -> { retrying=, other= }
local resumed_by = {}
local callback_errors = {}

local function app_record(id)
  local a = apps[id]
  if not a then
    a = { sent = 0, sent_high = 0, seen = intervals(), seen_n = 0, dups = 0, windows = {}, gaps = {} }
    apps[id] = a
  end
  return a
end

for i = 1, BOTS do
  local user = ("soak%03d@contoso.com"):format(i)
  local status = control("POST", "/_sim/users", { username = user, password = "soak-" .. i })
  assert(status == 201, "adding user " .. user .. ": " .. tostring(status))
  local c = ucwa.client{ url = sim.url, username = user, password = "soak-" .. i, engine = eng,
    format = i % 2 == 0 and "xml" or "json",
    timeout = 5, event_timeout = 180, event_grace = 5, backoff = { initial = 0.05, max = 1 } }
  local bot = { client = c, user = user, index = i, ready_once = false, history = {} }
  bots[i], by_user[user] = bot, bot
  c:on("ready", function() bot.ready_once = true end)
  c:on("resumed", function(info)
    local r = tostring(info.reason)
    resumed_by[r] = (resumed_by[r] or 0) + 1
    bot.history[#bot.history + 1] = ("%.2f resumed %s"):format(gettime() - t0, r)
  end)
  c:on("error", function(err)
    local key = tostring(err.code) .. "/" .. tostring(err.subcode or "-")
    local e = errors_by[key]
    if not e then e = { retrying = 0, other = 0, example = tostring(err) }; errors_by[key] = e end
    if err.retrying then e.retrying = e.retrying + 1 else e.other = e.other + 1 end
    if err.code == "CallbackError" then callback_errors[#callback_errors + 1] = tostring(err) end
    bot.history[#bot.history + 1] = ("%.2f error %s%s%s"):format(gettime() - t0, tostring(err),
      err.retrying and " (retrying)" or "", err.fatal and " (fatal)" or "")
  end)
  c:on("event", function(ev, sender)
    if sender.rel ~= "me" or not ev.link or ev.link.rel ~= "note" then return end
    local id = sender.href:match("/applications/(%d+)/")
    local n = math.tointeger(tonumber(ev.link.title))
    if not id or not n then totals.foreign = totals.foreign + 1; return end
    local a = apps[id]
    if not a then totals.foreign = totals.foreign + 1; return end
    if a.bot ~= bot then totals.misrouted = totals.misrouted + 1; return end
    local high = a.seen:max()
    if n > high + 1 and #a.gaps < 20 then a.gaps[#a.gaps + 1] = { gettime() - t0, high + 1, n - 1 } end
    if a.seen:add(n) then
      a.seen_n = a.seen_n + 1
      totals.seen = totals.seen + 1
    else
      a.dups = a.dups + 1
      totals.dups = totals.dups + 1
      if #a.gaps < 20 then a.gaps[#a.gaps + 1] = { gettime() - t0, n, n, dup = true } end
    end
  end)
end

-- user -> its newest application, from the simulator's state.
local function refresh_apps()
  local _, st = control("GET", "/_sim/state")
  local newest = {}
  for _, a in ipairs(st.applications) do
    local bot = by_user[a.user]
    if bot and not a.anonymous then
      local id = math.tointeger(a.id)
      if not newest[bot] or id > newest[bot] then newest[bot] = id end
    end
  end
  for _, bot in ipairs(bots) do
    local id = newest[bot] and ("%d"):format(newest[bot])
    bot.app = id
    if id then
      local a = app_record(id)
      if a.bot and a.bot ~= bot then error("application " .. id .. " changed hands") end
      a.bot = bot
    end
  end
  return st
end

local function all_ready()
  for _, bot in ipairs(bots) do
    if bot.client.state ~= "ready" then return false end
  end
  return true
end

local function drive_until(pred, seconds, what)
  local deadline = gettime() + seconds
  while not pred() do
    if gettime() > deadline then return false, what end
    eng:step(0.02)
  end
  return true
end

local t_start = gettime()
for _, bot in ipairs(bots) do bot.client:start() end
assert(drive_until(all_ready, 60, "sign-in"), "the bots did not all sign in within 60 s")
local t_signin = gettime() - t_start
refresh_apps()

-- Sending events ------------------------------------------------------------

local function send_events(bot, count)
  if not bot.app then return end
  local id = bot.app
  local status, ans = control("POST", "/_sim/apps/" .. id .. "/events", { count = count })
  if status == 404 then bot.app = nil; return end  -- forgotten: refresh_apps finds the new one
  assert(status == 200, "POST events: " .. tostring(status))
  local first, last = math.tointeger(ans.first), math.tointeger(ans.last)
  local a = app_record(id)
  if first ~= a.sent_high + 1 then
    error(("application %s: the simulator numbered events %d..%d after %d"):format(id, first, last, a.sent_high))
  end
  a.sent_high = last
  a.sent = a.sent + (last - first + 1)
  totals.sent = totals.sent + (last - first + 1)
end

local SEND_EVERY = 0.025
local PER_SEND = RATE * SEND_EVERY  -- events per send tick, spread over 1..3 bots
local function send_tick()
  local k = math.random(1, 3)
  for _ = 1, k do
    local bot = bots[math.random(#bots)]
    send_events(bot, math.max(1, math.floor(math.random() * 2 * PER_SEND / k + 0.5)))
  end
end

-- The faults ----------------------------------------------------------------

local fault_counts = {}
local fault_log = {} -- { t, name, detail }
local documented_windows = 0
local stop_total = 0

-- The server may drop what it holds for this application: note the window.
local function open_window(bot)
  local a = apps[bot.app]
  local lo = a.seen:max()
  if a.sent_high > lo then
    local w = a.windows[#a.windows]
    if w and w[2] >= lo then
      w[2] = a.sent_high -- still open from an earlier resume
    else
      a.windows[#a.windows + 1] = { lo + 1, a.sent_high }
    end
    documented_windows = documented_windows + 1
  end
end

local function random_ready_bot()
  for _ = 1, 20 do
    local bot = bots[math.random(#bots)]
    if bot.app and bot.client.state == "ready" then return bot end
  end
end

local cont_at, long_stop
-- Each applies one fault and says what it did (for the fault log).
local FAULTS = {
  { "drop", function()
      local n = math.random(1, 5)
      control("POST", "/_sim/faults/drop-pget", { count = n })
      return ("%d P-GET answers"):format(n)
    end },
  { "5xx", function()
      local status = ({ 500, 502, 503 })[math.random(3)]
      local match = ({ false, "/events", "/applications" })[math.random(3)] or nil
      local n = math.random(1, 8)
      control("POST", "/_sim/faults/fail", { count = n, status = status, match = match })
      return ("%d x %d, match %s"):format(n, status, tostring(match))
    end },
  { "delay", function()
      local match = ({ false, "/events" })[math.random(2)] or nil
      local n, secs = math.random(1, 5), 0.2 + math.random() * 2.8
      control("POST", "/_sim/faults/delay", { count = n, seconds = secs, match = match })
      return ("%d x %.1f s, match %s"):format(n, secs, tostring(match))
    end },
  { "401", function()
      local n = math.random(1, 3)
      control("POST", "/_sim/faults/fail", { count = n, status = 401, code = "Unauthorized", match = "/events" })
      return ("%d P-GETs"):format(n)
    end },
  { "resync", function()
      local bot = random_ready_bot()
      if not bot then return "no bot ready" end
      control("POST", "/_sim/apps/" .. bot.app .. "/resync", {})
      return "application " .. bot.app
    end },
  { "resume", function()
      local bot = random_ready_bot()
      if not bot then return "no bot ready" end
      send_events(bot, math.random(1, 200)) -- may be held by the server: a documented loss
      open_window(bot)
      control("POST", "/_sim/apps/" .. bot.app .. "/resume", {})
      -- sent after the resume: these must arrive (as in spec/55)
      local after = math.random(1, 50)
      send_events(bot, after)
      return ("application %s, %d events after it"):format(bot.app, after)
    end },
  { "forget", function()
      local bot = random_ready_bot()
      if not bot then return "no bot ready" end
      send_events(bot, math.random(1, 200))
      open_window(bot)
      control("POST", "/_sim/apps/" .. bot.app .. "/forget", {})
      local id = bot.app
      bot.app = nil
      return "application " .. id
    end },
  { "expire", function()
      if math.random() < 0.3 then
        control("POST", "/_sim/tokens/expire", {})
        return "every token"
      end
      local user = bots[math.random(#bots)].user
      control("POST", "/_sim/tokens/expire", { user = user })
      return user
    end },
  { "sigstop", function()
      -- short and long in turn: every other one outlasts the client's request timeout (5 s)
      long_stop = not long_stop
      local secs = long_stop and 5.5 + math.random() * 1.5 or 0.2 + math.random() * 2.3
      signal("STOP")
      stopped = true
      cont_at = gettime() + secs
      stop_total = stop_total + secs
      return ("%.1f s"):format(secs)
    end },
}

-- Each kind in turn, in a shuffled order each round, so a short run has them all.
local deck = {}
local function next_fault()
  if #deck == 0 then
    for i = 1, #FAULTS do deck[i] = FAULTS[i] end
    for i = #deck, 2, -1 do
      local j = math.random(i)
      deck[i], deck[j] = deck[j], deck[i]
    end
  end
  return table.remove(deck)
end

-- The run -------------------------------------------------------------------

local my_pid = io.open("/proc/self/stat"):read("n")
say("soak: %d bots (json and xml) on one engine, ucwa-sim pid %d, %d s of faults, ~%d events/s, seed %d",
  BOTS, sim.pid, SECONDS, RATE, SEED)
say("signed in in %.1f s", t_signin)

-- warm-up: events, no faults, so the start figures include a working set
local t_warm = gettime() + WARMUP
local next_send = gettime()
while gettime() < t_warm do
  eng:step(0.005)
  if gettime() >= next_send then send_tick(); next_send = next_send + SEND_EVERY end
end
drive_until(function() return false end, 0.5)
collectgarbage(); collectgarbage()
local rss0, lua0, sim_rss0 = rss_kb(), collectgarbage("count"), rss_kb(sim.pid)
local cpu0, sim_cpu0, wall0 = cpu_seconds(my_pid), cpu_seconds(sim.pid), gettime()
t0 = wall0

local samples = {}
local t_end = wall0 + SECONDS
local next_fault_at = wall0 + 0.2
local next_sample = wall0 + 1
local next_refresh = wall0 + 0.5
local rss_max = rss0
while true do
  local now = gettime()
  if now >= t_end and not stopped then break end
  eng:step(0.005)
  now = gettime()
  if stopped then
    if now >= cont_at then
      signal("CONT")
      stopped = false
      note("SIGCONT")
    end
  else
    if now >= next_send then
      send_tick()
      next_send = math.max(next_send + SEND_EVERY, now - 0.1)
    end
    if now >= next_refresh then
      refresh_apps()
      next_refresh = now + 0.5
    end
    if now >= next_fault_at and now < t_end - 1 then
      local f = next_fault()
      fault_counts[f[1]] = (fault_counts[f[1]] or 0) + 1
      local detail = f[2]() or ""
      fault_log[#fault_log + 1] = { gettime() - t0, f[1], detail }
      note("fault %s %s", f[1], detail)
      next_fault_at = gettime() + 0.3 + math.random() * 0.6
    end
  end
  if now >= next_sample then
    local r = rss_kb()
    if r > rss_max then rss_max = r end
    samples[#samples + 1] = ("%.1f"):format(r / 1024)
    next_sample = next_sample + math.max(1, SECONDS / 15)
  end
end
local wall_faults = gettime() - wall0

-- The drain: no faults; every bot ready, every event either seen or in a
-- documented window.
control("POST", "/_sim/faults/clear", {})
local function settled()
  if not all_ready() then return false end
  for _, a in pairs(apps) do
    if a.seen_n < a.sent then
      -- what is missing must all lie in windows
      local missing = a.sent - a.seen_n
      local in_windows = 0
      for _, w in ipairs(a.windows) do in_windows = in_windows + (w[2] - w[1] + 1) - a.seen:count_in(w[1], w[2]) end
      if missing > in_windows then return false end
    end
  end
  return true
end
-- Nothing more can come: every bot ready and waiting, nothing queued or
-- handed out at the simulator, and no event for 3 s.
local function hopeless(st, quiet)
  if quiet < 3 or not all_ready() or (st.events_queued or 0) > 0 then return false end
  for _, info in ipairs(st.applications) do
    if info.unacked_batch or info.queued > 0 or not info.pget then return false end
  end
  return true
end
local t_drain = gettime()
local drained = false
local last_seen, last_change = totals.seen + totals.dups, gettime()
while gettime() - t_drain < DRAIN do
  eng:step(0.02)
  if totals.seen + totals.dups ~= last_seen then last_seen, last_change = totals.seen + totals.dups, gettime() end
  if gettime() - t_drain > 0.2 then
    local st = refresh_apps()
    if settled() then drained = true; break end
    if hopeless(st, gettime() - last_change) then break end
  end
end
-- late duplicates would show here
drive_until(function() return false end, 1)
local t_drained = gettime() - t_drain
local wall = gettime() - wall0

local _, st = control("GET", "/_sim/state")
local cpu1, sim_cpu1 = cpu_seconds(my_pid), cpu_seconds(sim.pid)
collectgarbage(); collectgarbage()
local rss1, lua1, sim_rss1 = rss_kb(), collectgarbage("count"), rss_kb(sim.pid)

-- The reckoning -------------------------------------------------------------

local lost, documented, dups = 0, 0, 0
local lost_detail = {}
for id, a in pairs(apps) do
  dups = dups + a.dups
  for k = 1, a.sent_high do
    if not a.seen:has(k) then
      local doc = false
      for _, w in ipairs(a.windows) do
        if k >= w[1] and k <= w[2] then doc = true; break end
      end
      if doc then
        documented = documented + 1
      else
        lost = lost + 1
        local d = lost_detail[id]
        if not d then
          d = { app = id, bot = a.bot and a.bot.user, first = k, n = 0, state = a.bot and a.bot.client.state }
          lost_detail[id] = d
        end
        d.n = d.n + 1
        d.last = k
      end
    end
  end
end

-- What the bot of application record `a` went through, and the faults before
-- each gap or duplicate it saw.
local function explain(a)
  local w = {}
  for _, iv in ipairs(a.windows) do w[#w + 1] = ("%d..%d"):format(iv[1], iv[2]) end
  local seen = {}
  for i = 1, math.min(a.seen.n, 10) do seen[#seen + 1] = ("%d..%d"):format(a.seen[i][1], a.seen[i][2]) end
  say("    sent 1..%d; seen %s%s; documented windows: %s", a.sent_high, table.concat(seen, ", "),
    a.seen.n > 10 and " ..." or "", #w > 0 and table.concat(w, ", ") or "none")
  for _, h in ipairs(a.bot and a.bot.history or {}) do say("    %s", h) end
  for _, g in ipairs(a.gaps) do
    say("    %.2f s: %s %d..%d", g[1], g.dup and "duplicate" or "gap (the next event seen then)", g[2], g[3])
    for _, f in ipairs(fault_log) do
      if f[1] > g[1] - 8 and f[1] <= g[1] then say("      %.2f fault %s %s", f[1], f[2], f[3]) end
    end
  end
  if a.bot and a.bot.client._trace then -- exploration builds only
    for _, line in ipairs(a.bot.client._trace) do say("    trace %s", line) end
  end
end

local failures = {}
local function fail(fmt, ...) failures[#failures + 1] = fmt:format(...) end

say("")
say("faults (%.1f s): %s", wall_faults, (function()
  local t = {}
  for _, f in ipairs(FAULTS) do t[#t + 1] = ("%s %d"):format(f[1], fault_counts[f[1]] or 0) end
  return table.concat(t, ", ")
end)())
say("  the simulator was stopped for %.1f s in all; %d documented windows (resume/forget)", stop_total,
  documented_windows)
say("events: sent %d, seen %d, lost %d, duplicated %d; documented losses %d (a resume or a forgotten "
  .. "application drops what the server held; everything else must arrive exactly once)",
  totals.sent, totals.seen, lost, dups, documented)
if totals.misrouted > 0 or totals.foreign > 0 then
  say("  %d events reached the wrong bot, %d named an unknown application", totals.misrouted, totals.foreign)
end
say("drain: %s in %.1f s", drained and "settled" or "NOT settled", t_drained)
local resumed = {}
for r, n in pairs(resumed_by) do resumed[#resumed + 1] = ("%s %d"):format(r, n) end
table.sort(resumed)
say("resumed: %s", #resumed > 0 and table.concat(resumed, ", ") or "none")
say("errors reported to the bots (code/subcode: with retrying = true, other):")
local keys = {}
for k in pairs(errors_by) do keys[#keys + 1] = k end
table.sort(keys)
if #keys == 0 then say("  none") end
for _, k in ipairs(keys) do
  local e = errors_by[k]
  say("  %-40s %6d %6d   e.g. %s", k, e.retrying, e.other, e.example:sub(1, 120))
end
local states = {}
for _, bot in ipairs(bots) do
  local s = bot.client.state
  states[s] = (states[s] or 0) + 1
  if s ~= "ready" then fail("%s ends in state %s", bot.user, s) end
end
local st_list = {}
for s, n in pairs(states) do st_list[#st_list + 1] = ("%s %d"):format(s, n) end
say("bot states at the end: %s", table.concat(st_list, ", "))
say("simulator at the end: %d applications, %d P-GETs held, %d events queued, %d connections",
  st.application_count, st.pgets_held, st.events_queued or 0, st.connections or 0)
say("RSS: client %.1f MB at the start, %.1f MB at the end (growth %.1f MB, bound %.0f MB; max %.1f MB), "
  .. "Lua heap %.1f -> %.1f MB; simulator %.1f -> %.1f MB",
  rss0 / 1024, rss1 / 1024, (rss1 - rss0) / 1024, RSS_BOUND_MB, rss_max / 1024, lua0 / 1024, lua1 / 1024,
  sim_rss0 / 1024, sim_rss1 / 1024)
say("  samples (MB): %s", table.concat(samples, " "))
say("CPU over %.1f s: client %.1f s (%.0f%%), simulator %.1f s (%.0f%%)", wall,
  cpu1 - cpu0, (cpu1 - cpu0) / wall * 100, sim_cpu1 - sim_cpu0, (sim_cpu1 - sim_cpu0) / wall * 100)

if lost > 0 then
  fail("%d events lost outside the documented cases", lost)
  local n = 0
  for _, d in pairs(lost_detail) do
    n = n + 1
    if n > 10 then break end
    say("  lost: application %s (%s, now %s): %d events, %d..%d", d.app, tostring(d.bot), tostring(d.state),
      d.n, d.first, d.last)
    local a = apps[d.app]
    for _, info in ipairs(st.applications) do
      if ("%d"):format(info.id) == d.app then
        say("    at the simulator: next_ack %d, unacked_batch %s, queued %d, pget %s, idle %s",
          info.next_ack, tostring(info.unacked_batch), info.queued, tostring(info.pget), tostring(info.idle))
      end
    end
    local session = a.bot and a.bot.client._session -- white box: the bot's event channel
    local ch = session and session.channel
    say("    the bot's channel: %s", ch and ("running %s, pending %s, url %s"):format(tostring(ch:running()),
      tostring(ch:pending()), tostring(ch:url())) or "none")
    explain(a)
  end
end
if dups > 0 then
  fail("%d events delivered twice", dups)
  local n = 0
  for id, a in pairs(apps) do
    if a.dups > 0 and n < 10 then
      n = n + 1
      say("  duplicates: application %s (%s): %d", id, a.bot and a.bot.user or "?", a.dups)
      explain(a)
    end
  end
end
if totals.misrouted > 0 then fail("%d events reached a bot they were not for", totals.misrouted) end
if #callback_errors > 0 then fail("the soak's own callbacks raised: %s", callback_errors[1]) end
if not drained then fail("not settled %.0f s after the faults stopped", t_drained) end
if (rss1 - rss0) / 1024 > RSS_BOUND_MB then
  fail("RSS grew by %.1f MB, past the bound of %.0f MB", (rss1 - rss0) / 1024, RSS_BOUND_MB)
end
if totals.sent == 0 then fail("no events were sent") end

for _, bot in ipairs(bots) do bot.client._stepping = true; bot.client:close() end -- no blocking DELETEs
drive_until(function() return false end, 0.5)
eng:close()
local ok, how, code = sim:stop()
if not ok then fail("the simulator did not exit cleanly (%s %s)", tostring(how), tostring(code)) end

if #failures > 0 then
  say("")
  for _, f in ipairs(failures) do say("SOAK FAILED: %s", f) end
  os.exit(1)
end
say("soak passed")
