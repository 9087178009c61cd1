-- Where a signed-in bot's memory goes (issue 16): N bots (CENSUS_APPS,
-- default 1,000; CENSUS_MODEL=full for application_model = "full") on one
-- shared engine against ucwa-sim, each with its P-GET
-- pending, as bench/client_bench.lua leaves them; then
--   * the C heap (mallinfo2, less the Lua heap) and the Lua heap
--     (collectgarbage("count")) per bot;
--   * the Lua heap by what holds it: each piece of every bot's session is
--     dropped in turn, a full collection run, and what it gave back divided
--     by N is that piece's own share (what only it reaches; what is shared
--     between bots counts nowhere). The bots are unusable afterwards.
-- Figures only, no pass/fail. For the C heap by libcurl's allocation sites,
-- run it under heaptrack with CENSUS_EXIT=1 (exits with the bots alive: the
-- "leaked" bytes heaptrack_print shows are the live ones).
local build = os.getenv("UCWA_BUILD") or "build"
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;bench/lib/?.lua;" .. package.path
package.cpath = build .. "/?.so;" .. package.cpath

local ucwa = require "ucwa"
local bench = require "ucwa_bench"
local gettime = require("socket").gettime
local util = require "bench_util"
local report, rss_kb = util.report, util.rss_kb

local N = tonumber(os.getenv("CENSUS_APPS") or "1000")

local function full_gc()
  collectgarbage()
  collectgarbage()
end

local sim = require("ucwa.sim").start{ step_delay = 0, min_timeout = 0.1, app_idle = 3600 }
local ok, err = pcall(function()
  local eng = ucwa.engine{}
  full_gc()
  local lua0, heap0, rss0 = collectgarbage("count"), bench.heap(), rss_kb()
  local clients, ready = {}, 0
  local t0, cpu0 = gettime(), os.clock()
  -- CENSUS_WAVE=k: k bots signing in at a time (default all at once), to
  -- tell what the allocator keeps of the sign-in's peak
  local wave = tonumber(os.getenv("CENSUS_WAVE") or N)
  for i = 1, N do
    local c = ucwa.client{ url = sim.url, username = "bot@contoso.com", password = "password", engine = eng,
                           available = os.getenv("CENSUS_AVAILABLE") ~= nil,
                           application_model = os.getenv("CENSUS_MODEL") }
    c:on("ready", function() ready = ready + 1 end)
    c:start()
    clients[i] = c
    while i - ready >= wave do eng:step(0.05) end
  end
  while ready < N do
    eng:step(0.05)
    if gettime() - t0 > 300 then error("census: sign-in timed out") end
  end
  for _ = 1, 20 do eng:step(0.01) end
  full_gc()
  local lua_kb = (collectgarbage("count") - lua0) / N
  local heap_kb = (bench.heap() - heap0) / 1024 / N
  report("%d bots signed in in %.1f s, client CPU %.1f s (available = %s)", N, gettime() - t0, os.clock() - cpu0,
    tostring(os.getenv("CENSUS_AVAILABLE") ~= nil))
  report("per bot: RSS %.2f KB; heap in use %.2f KB = C %.2f KB + Lua %.2f KB", (rss_kb() - rss0) / N, heap_kb,
    heap_kb - lua_kb, lua_kb)
  if os.getenv("CENSUS_EXIT") then -- the simulator first: it holds our stdout
    sim:stop()
    os.exit(0, false)
  end

  -- the Lua heap by piece, each dropped from every bot in turn
  local function drop(what, fn)
    full_gc()
    local before = collectgarbage("count")
    for _, c in ipairs(clients) do fn(c, c._session) end
    full_gc()
    report("  %-58s %6.2f KB", what, (before - collectgarbage("count")) / N)
  end
  report("Lua heap per bot, by piece (what dropping it gave back):")
  local first = clients[1]._session.application
  if getmetatable(first.links) == nil then -- CENSUS_MODEL=full: the model as the server sent it
    local emb = {}
    for k in pairs(first.embedded) do emb[#emb + 1] = k end
    table.sort(emb)
    for _, k in ipairs(emb) do
      drop("application.embedded." .. k, function(_, s) s.application.embedded[k] = nil end)
    end
    drop("application.links", function(_, s) s.application.links = {} end)
  else -- lean (ucwa.application): the links' templates are shared, each bot has two small proxies
    drop("application.links and .embedded (lean)", function(_, s)
      s.application.links, s.application.embedded = {}, {}
    end)
  end
  drop("application.properties", function(_, s) s.application.properties = {} end)
  drop("the application object (client.application, session.application)", function(c, s)
    c.application, s.application = nil, nil
  end)
  drop("registry (ucwa.dispatch)", function(_, s) s.registry = nil end)
  drop("tokens (ucwa.tokens)", function(_, s) s.tokens = nil end)
  drop("trust policy (ucwa.trust)", function(_, s) s.policy = nil end)
  drop("options copy", function(_, s) s.options = nil end)
  drop("async (coroutines; ucwa.async)", function(_, s) s.async = nil end)
  drop("timers (activity, renew; session.timers, session.named)", function(_, s)
    for h in pairs(s.timers) do h:cancel() end
    s.timers, s.named = nil, nil
  end)
  drop("durable hooks, deferred errors, the call closure", function(_, s)
    s.durable, s.deferred, s.call = nil, nil, nil
  end)
  drop("the client's handler tables", function(c) c._handlers = nil end)
  drop("the event channel (its callbacks, the engine's references)", function(_, s)
    s.channel:close()
    s.channel = nil
  end)
  full_gc()
  local before = collectgarbage("count")
  clients = nil
  full_gc()
  report("  %-58s %6.2f KB", "the rest: client and session tables, their strings",
    (before - collectgarbage("count")) / N)
  eng:close()
end)
sim:stop()
if not ok then error(err, 0) end
