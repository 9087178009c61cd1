-- Restart = resume (issue 14): a bot process killed with SIGKILL while the
-- simulator releases 10,000 events, started again on the same SQLite store,
-- carries on the same session: every event reaches a handler, at most one
-- batch twice (with the same ev.id), none lost; still in the meeting as the
-- same participant; the invitation it had in flight completes in the new
-- process. A server that lost the application meanwhile: a fresh sign-in and
-- `resumed`. JSON and XML.
local helpers = require "helpers"
local socket = require "socket"
local P = require "support.processes"
local L = require "support.line_log"

local BOT = "spec/support/durable_bot.lua"
local TOTAL = 10000

local tmp, kill, lines = P.tmp, P.kill, L.read

-- Starts the bot in the background; returns its pid.
local function spawn(sim, db, format, log, m1, m2, slow, env)
  local args = {}
  for i, a in ipairs{ helpers.lua, BOT, helpers.build, sim.url, db, format, log, m1, m2 } do
    args[i] = "'" .. a:gsub("'", "'\\''") .. "'"
  end
  return P.start(("UCWA_BOT_SLOW=%s %s %s >>'%s.err' 2>&1"):format(slow or 0, env or "", table.concat(args, " "), log))
end

local function find(log, pred)
  for _, w in ipairs(lines(log)) do
    if pred(w) then return w end
  end
end

local function wait_log(log, pred, what, seconds)
  local deadline = helpers.gettime() + (seconds or 20) * helpers.SLOW
  while true do
    local w = find(log, pred)
    if w then return w end
    if helpers.gettime() > deadline then
      error("timed out waiting for " .. what .. "; log:\n" .. (io.open(log) and helpers.read(log) or "")
        .. (io.open(log .. ".err") and helpers.read(log .. ".err") or ""), 2)
    end
    socket.sleep(0.02)
  end
end

local function count_events(log)
  local n = 0
  for _, w in ipairs(lines(log)) do if w[1] == "E" then n = n + 1 end end
  return n
end

local function member(sim, id, key)
  local status, m = sim:control("GET", "/_sim/meetings/" .. id)
  assert.equal(200, status)
  for _, mem in ipairs(m.members) do
    if mem.key == key then return mem end
  end
end

local function push(sim, app_id, n)
  assert.equal(200, (sim:control("POST", "/_sim/apps/" .. app_id .. "/events", { count = n })))
end

describe("a bot killed with SIGKILL and started again on its SQLite store", function()
  local sim, pids, files
  before_each(function()
    sim = helpers.sim{ app_idle = 120, pget_timeout = 1 }
    pids, files = {}, {}
  end)
  after_each(function()
    for _, pid in ipairs(pids) do kill(pid) end
    for _, f in ipairs(files) do
      for _, suffix in ipairs{ "", "-wal", "-shm", ".err" } do os.remove(f .. suffix) end
    end
    sim:stop()
  end)

  for _, format in ipairs{ "json", "xml" } do
    it("loses no event of 10,000, stays in the meeting, and completes its invitation (" .. format .. ")", function()
      local db, log1, log2 = tmp() .. ".db", tmp(), tmp()
      files = { db, log1, log2 }
      assert.equal(201, (sim:control("POST", "/_sim/meetings", { id = "M2", organizer = "alice@contoso.com",
        subject = "second" })))
      local m2 = "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:M2"
      pids[1] = spawn(sim, db, format, log1, helpers.DEMO1, m2, 0.0005)
      local ready = wait_log(log1, function(w) return w[1] == "ready" end, "the first process ready")
      -- meeting 1: admitted; meeting 2: waiting in the lobby when the process dies
      wait_log(log1, function() return (member(sim, "DEMO1", "bot@contoso.com") or {}).state == "lobby" end,
        "the bot in DEMO1's lobby")
      assert.equal(200, (sim:control("POST", "/_sim/meetings/DEMO1/admit", { user = "bot@contoso.com" })))
      wait_log(log1, function(w) return w[1] == "inflight" end, "the join of M2 in flight")
      wait_log(log1, function() return (member(sim, "M2", "bot@contoso.com") or {}).state == "lobby" end,
        "the bot in M2's lobby")
      local seat = member(sim, "DEMO1", "bot@contoso.com")
      assert.equal("in", seat.state)
      local app_id = seat.app
      assert.truthy(app_id)

      -- the events, released 100 at a time; the process killed in the middle
      -- of them (its handler slowed down so that the kill lands in a batch)
      local pushed = 0
      while count_events(log1) < 1500 and pushed < 8000 do
        push(sim, app_id, 100)
        pushed = pushed + 100
        socket.sleep(0.01)
      end
      wait_log(log1, function() return count_events(log1) >= 1500 end, "1,500 events in the first process")
      kill(pids[1])
      table.remove(pids, 1)
      local before = count_events(log1)
      assert.is_true(before < pushed)
      -- more events while nobody listens
      while pushed < 9000 do
        push(sim, app_id, 100)
        pushed = pushed + 100
      end

      pids[1] = spawn(sim, db, format, log2)
      local restored = wait_log(log2, function(w) return w[1] == "restored" end, "restored in the second process")
      assert.is_nil(find(log2, function(w) return w[1] == "ready" or w[1] == "resumed" end))
      assert.equal(ready[2]:match("[^/]+$"), restored[2]:match("[^/]+$")) -- the same application
      assert.equal("2", restored[3])                                    -- both meetings' conversations
      assert.equal("join-m2", restored[4])                              -- the invitation in flight
      while pushed < TOTAL do
        push(sim, app_id, 100)
        pushed = pushed + 100
        socket.sleep(0.002)
      end
      wait_log(log2, function()
        local seen = {}
        for _, l in ipairs{ log1, log2 } do
          for _, w in ipairs(lines(l)) do if w[1] == "E" then seen[tonumber(w[3])] = true end end
        end
        for i = 1, TOTAL do if not seen[i] then return false end end
        return true
      end, "all 10,000 events", 60)

      -- none lost, none out of place; twice only within one batch, with the same id
      local ids, twice = {}, {}
      for _, l in ipairs{ log1, log2 } do
        for _, w in ipairs(lines(l)) do
          if w[1] == "E" then
            local title = tonumber(w[3])
            if ids[title] then
              assert.equal(ids[title], w[2], "event " .. title .. " came again with another id")
              twice[w[2]:match("^(%d+):")] = true
            end
            ids[title] = w[2]
          end
        end
      end
      for i = 1, TOTAL do assert.truthy(ids[i], "event " .. i .. " lost") end
      local batches = 0
      for _ in pairs(twice) do batches = batches + 1 end
      assert.is_true(batches <= 1, batches .. " batches came twice")

      -- still in meeting 1 as the same participant: no lobby, no admit
      local now = member(sim, "DEMO1", "bot@contoso.com")
      assert.equal("in", now.state)
      assert.equal(app_id, now.app)
      -- the invitation in flight completes in the new process
      assert.is_nil(find(log1, function(w) return w[1] == "completed" and w[2] == "m2" end))
      assert.equal(200, (sim:control("POST", "/_sim/meetings/M2/admit", { user = "bot@contoso.com" })))
      local done = wait_log(log2, function(w) return w[1] == "completed" and w[2] == "m2" end, "M2's join completed")
      assert.equal("Success", done[3])
      assert.is_nil(find(log2, function(w) return w[1] == "error" end))
      local status, st = sim:control("GET", "/_sim/state")
      assert.equal(200, status)
      assert.equal(1, st.application_count)
    end)

    -- a guest's identity is its token: only with its tokens stored is it the same guest
    it("carries a guest (anonymous) bot with store_tokens on in its meeting, no lobby again (" .. format .. ")",
    function()
      local db, log1, log2 = tmp() .. ".db", tmp(), tmp()
      files = { db, log1, log2 }
      local env = "UCWA_BOT_GUEST=1 UCWA_BOT_STORE_TOKENS=1 UCWA_BOT_MEETING='" .. helpers.DEMO1 .. "'"
      pids[1] = spawn(sim, db, format, log1, helpers.DEMO1, nil, 0, env)
      local ready = wait_log(log1, function(w) return w[1] == "ready" end, "the guest ready")
      local _, st = sim:control("GET", "/_sim/state")
      local app_id = st.applications[#st.applications].id
      local function seat()
        local _, m = sim:control("GET", "/_sim/meetings/DEMO1")
        for _, mem in ipairs(m.members) do if mem.app == app_id then return mem end end
      end
      wait_log(log1, function() return (seat() or {}).state == "lobby" end, "the guest in DEMO1's lobby")
      assert.equal(200, (sim:control("POST", "/_sim/meetings/DEMO1/admit", { user = seat().key })))
      wait_log(log1, function(w) return w[1] == "completed" and w[2] == "m1" end, "the guest's join completed")
      push(sim, app_id, 5)
      wait_log(log1, function() return count_events(log1) >= 5 end, "events before the kill")
      kill(pids[1])
      table.remove(pids, 1)
      push(sim, app_id, 5) -- while nobody listens
      pids[1] = spawn(sim, db, format, log2, nil, nil, 0, env)
      local restored = wait_log(log2, function(w) return w[1] == "restored" end, "the guest restored")
      assert.is_nil(find(log2, function(w) return w[1] == "ready" or w[1] == "resumed" end))
      assert.equal(ready[2]:match("[^/]+$"), restored[2]:match("[^/]+$")) -- the same application
      assert.equal("1", restored[3])                                    -- its meeting's conversation
      wait_log(log2, function() return count_events(log2) >= 5 end, "the events sent while it was down")
      assert.equal("in", seat().state) -- no lobby, no admit
      assert.is_nil(find(log2, function(w) return w[1] == "error" end))
    end)

    it("signs a guest without store_tokens in afresh, a new guest, and says so (" .. format .. ")", function()
      local db, log1, log2 = tmp() .. ".db", tmp(), tmp()
      files = { db, log1, log2 }
      local env = "UCWA_BOT_GUEST=1 UCWA_BOT_MEETING='" .. helpers.DEMO1 .. "'"
      pids[1] = spawn(sim, db, format, log1, nil, nil, 0, env)
      local ready = wait_log(log1, function(w) return w[1] == "ready" end, "the guest ready")
      kill(pids[1])
      table.remove(pids, 1)
      pids[1] = spawn(sim, db, format, log2, nil, nil, 0, env)
      local resumed = wait_log(log2, function(w) return w[1] == "resumed" end, "resumed")
      assert.equal("ApplicationNotFound", resumed[2])
      assert.equal("true", resumed[3]) -- info.restart
      local again = wait_log(log2, function(w) return w[1] == "ready" end, "ready as a new guest")
      assert.are_not.equal(ready[2], again[2])
      assert.is_nil(find(log2, function(w) return w[1] == "restored" end))
    end)

    it("answers an invitation the dead process had received but not answered (" .. format .. ")", function()
      local db, log1, log2 = tmp() .. ".db", tmp(), tmp()
      files = { db, log1, log2 }
      pids[1] = spawn(sim, db, format, log1)
      wait_log(log1, function(w) return w[1] == "ready" end, "the first process ready")
      local st, r = sim:control("POST", "/_sim/users/alice@contoso.com/invite",
                                { to = "bot@contoso.com", message = "still there?" })
      assert.equal(200, st)
      wait_log(log1, function(w) return w[1] == "invited" end, "the invitation in the first process")
      kill(pids[1])
      table.remove(pids, 1)
      pids[1] = spawn(sim, db, format, log2, nil, nil, 0, "UCWA_BOT_ACCEPT=1")
      local accepting = wait_log(log2, function(w) return w[1] == "accepting" end, "the restored invitation")
      assert.equal("messagingInvitation", accepting[2])
      assert.equal("still", accepting[3]) -- the message (the log's words: its first)
      local done = wait_log(log2, function(w) return w[1] == "completed" and w[2] == "incoming" end,
        "the restored invitation accepted")
      assert.equal("Success", done[3])
      assert.is_nil(find(log2, function(w) return w[1] == "invited" end)) -- not a second time
      local _, rec = sim:control("GET", ("/_sim/invitations/%d"):format(r.invitation))
      assert.equal("Accepted", rec.state)
    end)

    it("signs in afresh and fires resumed when the server lost the application (" .. format .. ")", function()
      local db, log1, log2 = tmp() .. ".db", tmp(), tmp()
      files = { db, log1, log2 }
      pids[1] = spawn(sim, db, format, log1)
      local ready = wait_log(log1, function(w) return w[1] == "ready" end, "the first process ready")
      kill(pids[1])
      table.remove(pids, 1)
      local _, st = sim:control("GET", "/_sim/state")
      local app_id = st.applications[1].id
      assert.equal(200, (sim:control("POST", "/_sim/apps/" .. app_id .. "/forget", {})))
      pids[1] = spawn(sim, db, format, log2)
      local resumed = wait_log(log2, function(w) return w[1] == "resumed" end, "resumed")
      assert.equal("ApplicationNotFound", resumed[2])
      assert.equal("true", resumed[3]) -- info.restart
      local again = wait_log(log2, function(w) return w[1] == "ready" end, "ready after a fresh sign-in")
      assert.are_not.equal(ready[2], again[2])
      assert.is_nil(find(log2, function(w) return w[1] == "restored" end))
      -- the new application works: events reach the bot
      local _, st2 = sim:control("GET", "/_sim/state")
      push(sim, st2.applications[#st2.applications].id, 3)
      wait_log(log2, function() return count_events(log2) >= 3 end, "events on the new application")
    end)
  end
end)
