-- Fleets on Redis (issue 14): worker processes sharing bots through
-- ucwa.fleet and ucwa.store.redis, against ucwa-sim.
--  - three workers share 30 bots; one killed with SIGKILL: its bots run in
--    the others within the lease time plus a scan, no event lost, and never
--    one bot in two workers (the simulator sees no P-GET from the old owner
--    after the takeover, and no PGetReplaced between live workers);
--  - a worker paused (SIGSTOP) past its lease gives its bots up after
--    SIGCONT without writing to the store: Redis's MONITOR sees no write
--    with its stale fences.
-- Each test starts its own redis-server and simulator.
local helpers = require "helpers"
local socket = require "socket"
local R = require "support.redis_server"
local P = require "support.processes"
local L = require "support.line_log"

local WORKER = "spec/support/fleet_worker.lua"
local LEASE = 3       -- seconds: the lease each worker holds per bot
local SCAN = LEASE / 3 -- the fleet's default scan interval
local SLOW = helpers.SLOW

local tmp, kill, lines = P.tmp, P.kill, L.read

local function spawn(srv, sim, n, name, log, format, share)
  return P.start(("%s %s %s %d %s %d %s %s %s %s %s >>%s.err 2>&1"):format(helpers.lua, WORKER, helpers.build,
    srv.port, sim.url, n, tostring(LEASE), name, log, format or "json", share or "", log))
end

local function directory(n)
  local users = {}
  for i = 1, n do users[i] = ('{"username":"bot%d@contoso.com"}'):format(i) end
  local path = tmp() .. ".json"
  local f = assert(io.open(path, "w"))
  f:write('{"users":[', table.concat(users, ","), '],"meetings":[]}')
  f:close()
  return path
end

-- bot name -> the worker holding its lease (or false)
local function owners(srv, n)
  local t = {}
  for i = 1, n do t["bot" .. i] = srv:cli("GET", "f:{bot" .. i .. "}:lease") or false end
  return t
end

local function wait(pred, seconds, what, logs)
  local deadline = socket.gettime() + seconds * SLOW
  while not pred() do
    if socket.gettime() > deadline then
      local dump = {}
      for _, l in ipairs(logs or {}) do
        dump[#dump + 1] = l .. ":\n" .. (io.open(l .. ".err") and helpers.read(l .. ".err") or "")
      end
      error("timed out waiting for " .. what .. "\n" .. table.concat(dump, "\n"), 2)
    end
    socket.sleep(0.05)
  end
end

-- every bot's synthetic events across the logs: bot -> title -> {ids}
local function events_seen(logs)
  local seen = {}
  for _, log in ipairs(logs) do
    for _, w in ipairs(lines(log)) do
      if w[1] == "E" then
        local per = seen[w[2]] or {}
        seen[w[2]] = per
        local ids = per[tonumber(w[4])] or {}
        per[tonumber(w[4])] = ids
        ids[#ids + 1] = w[3]
      end
    end
  end
  return seen
end

-- Waits until each of bots 1..n has seen event `title` in one of the logs.
local function wait_events(logs, n, title, seconds, what)
  wait(function()
    local seen = events_seen(logs)
    for i = 1, n do if not (seen["bot" .. i] and seen["bot" .. i][title]) then return false end end
    return true
  end, seconds, what, logs)
end

-- Every bot saw titles 1..total, and an event seen twice carries one id
-- both times (the one batch a takeover may deliver again).
local function assert_no_event_lost(logs, n, total)
  local seen = events_seen(logs)
  for i = 1, n do
    local per = seen["bot" .. i] or {}
    for t = 1, total do
      local ids = per[t]
      assert.is_truthy(ids, ("bot%d lost event %d"):format(i, t))
      for _, id in ipairs(ids) do assert.equal(ids[1], id, ("bot%d event %d: two ids"):format(i, t)) end
    end
  end
end

-- The simulator's view, app by app, since `before` (a /_sim/state taken
-- while the ownership was settled): a bot of a live worker saw its P-GETs
-- from that worker only; one of `dead`'s saw them from `dead`, then from one
-- new owner only; and no pending P-GET was replaced but `dead`'s.
local function assert_one_driver(sim, before, dead)
  local old = {}
  for _, app in ipairs(before.applications) do old[app.href] = app end
  local _, st = sim:control("GET", "/_sim/state")
  for _, app in ipairs(st.applications) do
    local was = old[app.href]
    assert.is_truthy(was, app.user .. ": a new application")
    local runs0, runs = was.pget_agents or {}, app.pget_agents or {}
    local last0 = runs0[#runs0].agent
    local new = {}
    for i = #runs0, #runs do new[#new + 1] = runs[i].agent end
    if last0 == "fleet-worker/" .. dead then
      assert.equal(2, #new, app.user .. ": P-GETs from " .. table.concat(new, ", ") .. " after the takeover")
      assert.are_not.equal(last0, new[2])
    else
      assert.same({ last0 }, new, app.user .. ": P-GETs from " .. table.concat(new, ", "))
    end
    local reps0, reps = was.replacements or {}, app.replacements or {}
    for i = #reps0 + 1, #reps do
      assert.equal("fleet-worker/" .. dead, reps[i].replaced,
        app.user .. ": " .. reps[i].by .. " replaced a live worker's P-GET")
    end
  end
  return st
end

local function push(sim, count)
  assert.equal(200, (sim:control("POST", "/_sim/events", { count = count })))
end

describe("a fleet on Redis", function()
  local srv, sim, pids, files
  before_each(function()
    srv = R.start()
    pids, files = {}, {}
  end)
  after_each(function()
    for _, pid in ipairs(pids) do kill(pid) end
    if sim then sim:stop() end
    sim = nil
    srv:stop()
    for _, f in ipairs(files) do os.remove(f); os.remove(f .. ".err") end
  end)

  for _, format in ipairs{ "json", "xml" } do
    it("takes a killed worker's bots over within the lease time, losing no event (" .. format .. ")", function()
      local N = 30
      local dir = directory(N)
      files[#files + 1] = dir
      sim = helpers.sim{ directory = dir, app_idle = 300, pget_timeout = 1 }
      local logs, names = {}, { "W1", "W2", "W3" }
      for i, name in ipairs(names) do
        logs[i] = tmp()
        files[#files + 1] = logs[i]
        pids[i] = spawn(srv, sim, N, name, logs[i], format)
      end
      -- all 30 running, ten in each worker (the fair share)
      local function ready_count()
        local n = 0
        for _, log in ipairs(logs) do
          for _, w in ipairs(lines(log)) do if w[1] == "ready" or w[1] == "restored" then n = n + 1 end end
        end
        return n
      end
      wait(function()
        if ready_count() < N then return false end
        local per = {}
        for _, o in pairs(owners(srv, N)) do if o then per[o] = (per[o] or 0) + 1 end end
        return per.W1 == 10 and per.W2 == 10 and per.W3 == 10
      end, 40, "30 bots, 10 a worker", logs)
      local _, st0 = sim:control("GET", "/_sim/state")
      local apps0 = {}
      for _, a in ipairs(st0.applications) do apps0[a.user] = a.href end
      push(sim, 10)
      wait_events(logs, N, 10, 20, "the first 10 events everywhere")
      -- W1 dies; events keep coming meanwhile
      local before = owners(srv, N)
      local _, st_settled = sim:control("GET", "/_sim/state")
      local killed_at = socket.gettime()
      kill(pids[1])
      push(sim, 10)
      local took
      wait(function()
        local o = owners(srv, N)
        for _, w in pairs(o) do if w == "W1" or not w then return false end end
        -- and running: every W1 bot restored in its new worker
        local restored = {}
        for i = 2, 3 do
          for _, w in ipairs(lines(logs[i])) do if w[1] == "restored" then restored[w[2]] = true end end
        end
        for bot, w in pairs(before) do if w == "W1" and not restored[bot] then return false end end
        took = socket.gettime() - killed_at
        return true
      end, 30, "W1's bots taken over", logs)
      -- the figure: the lease, plus a scan, plus the restore
      assert.is_true(took <= (LEASE + 2 * SCAN + 2) * SLOW, ("takeover took %.1f s"):format(took))
      push(sim, 10)
      wait_events(logs, N, 30, 30, "all 30 events everywhere")
      assert_no_event_lost(logs, N, 30)
      local st = assert_one_driver(sim, st_settled, "W1")
      -- the same sessions carried on: no new application for any bot
      assert.equal(N, st.application_count)
      for _, a in ipairs(st.applications) do assert.equal(apps0[a.user], a.href) end
      -- the survivors share the 30
      local per = {}
      for _, o in pairs(owners(srv, N)) do per[o] = (per[o] or 0) + 1 end
      assert.equal(30, (per.W2 or 0) + (per.W3 or 0))
    end)
  end

  it("a worker paused past its lease gives its bots up without writing to the store", function()
    local N = 6
    local dir = directory(N)
    files[#files + 1] = dir
    sim = helpers.sim{ directory = dir, app_idle = 300, pget_timeout = 1 }
    -- every command Redis runs, with its time
    local monitor = tmp()
    files[#files + 1] = monitor
    local mpid = io.popen(("redis-cli -p %d monitor > %s 2>&1 & echo $!"):format(srv.port, monitor)):read("l")
    pids[#pids + 1] = mpid
    local logs = { tmp(), tmp() }
    files[#files + 1], files[#files + 2] = logs[1], logs[2]
    pids[1] = spawn(srv, sim, N, "P", logs[1])
    wait(function()
      local n = 0
      for _, w in ipairs(lines(logs[1])) do if w[1] == "ready" then n = n + 1 end end
      return n == N
    end, 30, "P's 6 bots ready", logs)
    -- Q's share is fixed (all six): it never gives one back, so that who
    -- drives what changes only by the pause
    pids[2] = spawn(srv, sim, N, "Q", logs[2], "json", 6)
    -- P gives three back to Q (its fair share is 3 now)
    wait(function()
      local per = {}
      for _, o in pairs(owners(srv, N)) do if o then per[o] = (per[o] or 0) + 1 end end
      return per.P == 3 and per.Q == 3
    end, 30, "3 bots each", logs)
    push(sim, 5)
    wait_events(logs, N, 5, 20, "5 events everywhere")
    local p_bots = {}
    for bot, o in pairs(owners(srv, N)) do if o == "P" then p_bots[#p_bots + 1] = bot end end
    local _, st_settled = sim:control("GET", "/_sim/state")
    os.execute("kill -STOP " .. pids[1])
    push(sim, 5) -- P's bots' events wait at the server for the new owner
    wait(function()
      for _, o in pairs(owners(srv, N)) do if o ~= "Q" then return false end end
      return true
    end, 20, "Q owning all six", logs)
    wait(function()
      local restored = 0
      for _, w in ipairs(lines(logs[2])) do if w[1] == "restored" then restored = restored + 1 end end
      return restored >= 6
    end, 20, "Q running all six", logs)
    local resumed_at = socket.gettime()
    os.execute("kill -CONT " .. pids[1])
    -- P notices and lets go of each
    wait(function()
      local dropped = 0
      for _, w in ipairs(lines(logs[1])) do if w[1] == "drop" and w[3] == "LeaseLost" then dropped = dropped + 1 end end
      return dropped == #p_bots
    end, 10, "P dropping its bots", logs)
    push(sim, 5)
    wait_events(logs, N, 15, 20, "15 events everywhere")
    assert_no_event_lost(logs, N, 15)
    assert_one_driver(sim, st_settled, "P")
    -- Redis's view (MONITOR lists the commands scripts run too, so the
    -- fence counters can be followed): after SIGCONT, every fenced write
    -- carried its bot's current fence; none came with one of P's stale ones
    -- (P may take bots back later, over its fair share: with new fences)
    local fence, fenced_writes = {}, 0
    for l in io.lines(monitor) do
      local t = tonumber(l:match("^(%d+%.%d+)"))
      local incr = l:match('%[0 lua%] "INCR" "f:{(bot%d+)}:fence"')
      if incr then fence[incr] = (fence[incr] or 0) + 1 end
      local args = {}
      for a in l:gmatch('"(.-)"') do args[#args + 1] = a end
      if t and t > resumed_at and (args[1] == "EVALSHA" or args[1] == "EVAL") then
        local bot = (args[4] or ""):match("^f:{(bot%d+)}:fence$")
        if bot then
          fenced_writes = fenced_writes + 1
          assert.equal(tostring(fence[bot]), args[4 + tonumber(args[3])],
            "a write with a stale fence after SIGCONT: " .. l:sub(1, 160))
        end
      end
    end
    assert.is_true(fenced_writes > 0, "Q's writes are in the MONITOR log")
  end)

  it("hands its bots over on fleet:stop(), to a fleet that carries their sessions on", function()
    local N = 4
    local dir = directory(N)
    files[#files + 1] = dir
    sim = helpers.sim{ directory = dir, app_idle = 300, pget_timeout = 1 }
    local limits = require("ucwa.options").EVENT_TIMEOUT
    local min0 = limits.min
    limits.min = 1 -- ucwa-sim's short P-GETs
    finally(function() limits.min = min0 end)
    local ucwa = require "ucwa"
    local eng = ucwa.engine()
    local function worker(owner, share, seen)
      local store = ucwa.store.redis{ port = srv.port, engine = eng, lease = LEASE, owner = owner, prefix = "f:" }
      local bots = {}
      for i = 1, N do
        bots[i] = { name = "bot" .. i, username = "bot" .. i .. "@contoso.com", password = "password" }
      end
      return ucwa.fleet{ store = store, bots = bots, share = share,
        client = { url = sim.url, event_timeout = 2 },
        on_bot = function(name, c)
          c:on("ready", function() seen[name] = "ready" end)
          c:on("restored", function() seen[name] = "restored" end)
        end }, store
    end
    local seen_a, seen_b = {}, {}
    local a, store_a = worker("A", N, seen_a)
    assert.has_error(function() ucwa.fleet{ store = store_a, bots = {}, shar = 1 } end)
    assert.has_error(function() ucwa.fleet{ store = {}, bots = {} } end)
    a:start()
    helpers.drive(eng, function()
      local n = 0
      for _ in pairs(seen_a) do n = n + 1 end
      return n == N
    end, 20, "A's bots ready")
    assert.equal(N, a:count())
    local apps = {}
    for name, c in pairs(a:clients()) do apps[name] = c.application.href end
    local stopped = false
    a:stop(function() stopped = true end)
    helpers.drive(eng, function() return stopped end, 5, "A stopped")
    assert.equal(0, a:count())
    for i = 1, N do assert.is_false(srv:cli("GET", "f:{bot" .. i .. "}:lease")) end
    -- B takes them at its first scans, not a lease later, and restores each
    local b, store_b = worker("B", nil, seen_b)
    local t0 = eng:now()
    b:start()
    helpers.drive(eng, function()
      local n = 0
      for _, how in pairs(seen_b) do if how == "restored" then n = n + 1 end end
      return n == N
    end, 20, "B's bots restored")
    assert.is_true(eng:now() - t0 < LEASE, "took " .. (eng:now() - t0))
    for name, c in pairs(b:clients()) do assert.equal(apps[name], c.application.href) end
    b:stop()
    eng:step(0.1)
    store_a:close()
    store_b:close()
    eng:close()
  end)
end)
