-- A bot's session across server faults: every event exactly once, in order,
-- through dropped P-GETs, 5xx bursts, token expiry, a forced resync, a
-- resume, a response slower than the client's timeout, and a forgotten
-- application. Driven by ucwa-sim's fault injection.
local ucwa = require "ucwa"
local simmod = require "ucwa.sim"
local E = require "support.client_env"
local drive = require("helpers").drive

local TOTAL = { json = 10000, xml = 3000 }

-- These specs drive ucwa-sim's short P-GETs, below the documented minimum
-- of the event channel's timeout (180 s), so a P-GET slower than the
-- client's own deadline happens within the test.
local options = require "ucwa.options"
local function short_event_timeouts()
  local saved = options.EVENT_TIMEOUT.min
  options.EVENT_TIMEOUT.min = 0.1
  finally(function() options.EVENT_TIMEOUT.min = saved end)
end

for _, format in ipairs{ "json", "xml" } do
  describe("session under faults (" .. format .. ")", function()
    it("delivers " .. TOTAL[format] .. " events exactly once, in order, and carries on", function()
      short_event_timeouts()
      local sim = simmod.start{ step_delay = 0.01, min_timeout = 0.1 }
      finally(function() sim:stop() end)
      local client = ucwa.client{ url = sim.url, username = "bot@contoso.com", password = "password",
        format = format, event_timeout = 1, event_grace = 0.5, timeout = 2,
        backoff = { initial = 0.05, max = 0.2 } }
      local ready, resumed, errors_seen = false, {}, {}
      client:on("ready", function() ready = true end)
      client:on("resumed", function(info) resumed[#resumed + 1] = info.reason end)
      client:on("error", function(e) errors_seen[#errors_seen + 1] = tostring(e) end)
      -- synthetic events: sender me, "updated note", title = sequence number per application
      local got, count, dups, gaps = {}, 0, 0, 0
      client:on("event", function(ev, sender)
        if sender.rel == "me" and ev.link and ev.link.rel == "note" then
          local app = sender.href:match("applications/(%d+)/")
          local n = tonumber(ev.link.title)
          local last = got[app] or 0
          if n <= last then dups = dups + 1 elseif n ~= last + 1 then gaps = gaps + 1 end
          got[app] = math.max(last, n)
          count = count + 1
        end
      end)
      client:start()
      drive(client, function() return ready end, 5, "ready")

      local function app_id()
        local _, st = sim:control("GET", "/_sim/state")
        return ("%d"):format(st.applications[#st.applications].id)
      end
      local id = app_id()
      local pushed = 0
      local function push(n)
        sim:control("POST", "/_sim/apps/" .. id .. "/events", { count = n })
        pushed = pushed + n
      end
      local function settle(what)
        drive(client, function() return count == pushed end, 30, what)
      end

      local per = TOTAL[format] // 10
      local faults = {
        { "dropped P-GETs", function() sim:control("POST", "/_sim/faults/drop-pget", { count = 3 }) end },
        { "a 5xx burst", function() sim:control("POST", "/_sim/faults/fail", { count = 5, match = "/events" }) end },
        { "token expiry", function() sim:control("POST", "/_sim/tokens/expire", {}) end },
        { "a forced resync", function() sim:control("POST", "/_sim/apps/" .. id .. "/resync", {}) end },
        { "a slow P-GET", function()
            sim:control("POST", "/_sim/faults/delay", { count = 1, seconds = 2.5, match = "/events" })
          end },
        { "503 on everything", function() sim:control("POST", "/_sim/faults/fail", { count = 3 }) end },
      }
      local function fault_used_up()
        local _, st = sim:control("GET", "/_sim/state")
        return st.faults.drop_pget == 0 and st.faults.fail == nil and st.faults.delay == nil
      end
      for _, f in ipairs(faults) do
        push(per // 2)
        f[2]()
        push(per - per // 2)
        -- the fault really happens (the simulator uses it up) and nothing is lost
        drive(client, fault_used_up, 30, f[1])
        settle(f[1])
      end
      assert.same({ "resync" }, resumed)
      -- resume: the server drops what it held, so push after the resume is seen
      sim:control("POST", "/_sim/apps/" .. id .. "/resume", {})
      drive(client, function() return resumed[#resumed] == "resume" end, 10, "resume")
      push(per)
      settle("after resume")
      -- a forgotten application: created again, and its events arrive too
      sim:control("POST", "/_sim/apps/" .. id .. "/forget", {})
      drive(client, function() return resumed[#resumed] == "ApplicationNotFound" and client.state == "ready" end,
        10, "application re-created")
      id = app_id()
      push(TOTAL[format] - pushed)
      settle("the rest")

      assert.equal(TOTAL[format], count)
      assert.equal(0, dups)
      assert.equal(0, gaps)
      assert.equal("ready", client.state)
      assert.same({ "resync", "resume", "ApplicationNotFound" }, resumed)
      -- the session still works: join and complete
      local inv = client:join_meeting{ onlineMeetingUri = E.MEETING }
      E.admit_until_complete(client, sim, inv, 10)
      assert.equal("Success", inv.status)
      client:close()
    end)
  end)
end

describe("sign-in and token faults reach the error handler", function()
  local sim
  after_each(function() if sim then sim:stop(); sim = nil end end)

  local function new_client(o)
    local lines, errs = {}, {}
    local opts = { url = sim and sim.url, username = "bot@contoso.com", password = "password",
                   log = function(level, m) lines[#lines + 1] = level .. " " .. m end }
    for k, v in pairs(o or {}) do opts[k] = v end
    local c = ucwa.client(opts)
    c:on("error", function(e) errs[#errs + 1] = e end)
    return c, errs, lines
  end

  -- regression: a wrong URL or host retried forever and the error handler never fired
  it("reports every failed attempt with retrying = true, a refusal once with retrying = false", function()
    local c, errs = new_client{ url = "http://127.0.0.1:1/" }
    c:start()
    drive(c, function() return #errs >= 2 end, 5, "two failed attempts")
    assert.is_true(errs[1].retrying)
    assert.equal("NetworkError", errs[1].code)
    c:close()

    sim = simmod.start{ step_delay = 0 }
    local c2, errs2 = new_client{ password = "wrong" }
    c2:start()
    drive(c2, function() return #errs2 >= 1 end, 5, "the refusal")
    local t = E.gettime() + 1
    drive(c2, function() return E.gettime() > t end, 2, "time")
    assert.equal(1, #errs2)
    assert.is_false(errs2[1].retrying)
    assert.equal("Unauthorized", errs2[1].code)
    c2:close()
  end)

  it("gives up after signin_attempts, saying so, with retrying = false", function()
    local c, errs = new_client{ url = "http://127.0.0.1:1/", signin_attempts = 2 }
    c:start()
    drive(c, function() return #errs >= 2 end, 10, "two failed attempts")
    local t = E.gettime() + 2
    drive(c, function() return E.gettime() > t end, 3, "time")
    assert.equal(2, #errs)
    assert.is_true(errs[1].retrying)
    assert.is_false(errs[2].retrying)
    assert.matches("the last of 2 sign%-in attempts", errs[2].message)
    c:close()
  end)

  -- regression: a 401 on the event channel set off an unthrottled flood of
  -- password grants (21,684 in 15 s), nothing reported to the bot
  it("backs off and bounds token renewals on a channel that keeps answering 401, then reports", function()
    local tokens = require "ucwa.tokens"
    local saved = tokens.MAX_REFUSED
    tokens.MAX_REFUSED = 3
    finally(function() tokens.MAX_REFUSED = saved end)
    short_event_timeouts()
    sim = simmod.start{ step_delay = 0, min_timeout = 0.1 }
    local c, errs, lines = new_client{ event_timeout = 1, event_grace = 0.5 }
    local ready = false
    c:on("ready", function() ready = true end)
    c:start()
    drive(c, function() return ready end, 5, "ready")
    local grants0 = E.count_token_grants(lines)
    sim:control("POST", "/_sim/faults/fail", { count = 100000, status = 401, code = "Unauthorized", match = "events" })
    drive(c, function()
      for _, e in ipairs(errs) do if e.subcode == "TokenRefused" then return true end end
    end, 10, "TokenRefused reported")
    local t = E.gettime() + 1.5
    drive(c, function() return E.gettime() > t end, 3, "time")
    -- one grant per refused token (the first at once, then after 1 s, 2 s), none after giving up
    assert.equal(3, E.count_token_grants(lines) - grants0)
    c:close()
  end)
end)

describe("faults that cannot pass reach the error handler once, and sign-in stops", function()
  local sim
  before_each(function() sim = require("helpers").sim{} end)
  after_each(function() sim:stop() end)

  -- regression: a 10 MB token made every later request fail as "Out of memory"
  -- and sign-in retried forever
  it("a token too large for a header: HeaderTooLarge, without the token in the message", function()
    local big = "cwt=" .. string.rep("A", 10 * 1024 * 1024)
    local c = require("helpers").client(sim, { token = big })
    c:start()
    drive(c, function() return #c.errors >= 1 end, 10, "the error")
    local t = E.gettime() + 1
    drive(c, function() return E.gettime() > t end, 3, "time")
    assert.equal(1, #c.errors)
    assert.equal("HeaderTooLarge", c.errors[1].subcode)
    assert.is_false(c.errors[1].retrying)
    assert.is_nil(tostring(c.errors[1]):find("AAAAAAAA", 1, true))
    assert.equal("new", c.state)
    c:close()
  end)

  -- regression: timeouts during sign-in never reached the error handler
  it("a sign-in request that times out is reported, with retrying = true", function()
    sim:control("POST", "/_sim/faults/delay", { count = 1, seconds = 2, match = "/oauth/user" })
    local c = require("helpers").client(sim, { timeout = 0.5 })
    local ready = false
    c:on("ready", function() ready = true end)
    c:start()
    drive(c, function() return ready end, 10, "ready after the timeout")
    assert.equal("Timeout", c.errors[1].code)
    assert.is_true(c.errors[1].retrying)
    c:close()
  end)
end)

-- Found by the soak (make soak).
describe("the event channel across a resume and a failed renewal", function()
  local sim
  before_each(function() sim = require("helpers").sim{} end)
  after_each(function() require("helpers").close_clients(); sim:stop() end)

  local function bot()
    local c = require("helpers").client(sim, {})
    local seen, ready = {}, false
    c:on("ready", function() ready = true end)
    c:on("event", function(ev, sender)
      if sender.rel == "me" and ev.link and ev.link.rel == "note" then seen[#seen + 1] = tonumber(ev.link.title) end
    end)
    c:start()
    drive(c, function() return ready end, 5, "ready")
    local id = ("%d"):format(sim:state().applications[1].id)
    return c, seen, id
  end

  -- regression: events sent after a resume were lost (the resume batch had the
  -- self link of the batch handed out before, and was taken for a repeat)
  it("delivers the events sent after a resume", function()
    local c, seen, id = bot()
    local resumed
    c:on("resumed", function(info) resumed = info end)
    sim:control("POST", "/_sim/faults/fail", { count = 1, status = 503, match = "/events" })
    sim:control("POST", "/_sim/apps/" .. id .. "/events", { count = 5 })
    drive(c, function() return #seen >= 5 end, 5, "the first five")
    sim:control("POST", "/_sim/apps/" .. id .. "/resume", {})
    sim:control("POST", "/_sim/apps/" .. id .. "/events", { count = 5 })
    drive(c, function() return #seen >= 10 end, 10, "the five after the resume")
    assert.equal("resume", resumed and resumed.reason)
    c:close()
  end)

  -- regression: a token renewal that failed transiently left the channel
  -- stopped while the session stayed "ready"
  it("carries on after a token renewal that failed once", function()
    local c, seen, id = bot()
    sim:control("POST", "/_sim/tokens/expire", {})
    sim:control("POST", "/_sim/faults/fail", { count = 1, status = 503, match = "/oauth/token" })
    sim:control("POST", "/_sim/apps/" .. id .. "/events", { count = 5 })
    drive(c, function() return #seen >= 5 end, 20, "the events after the failed renewal")
    sim:control("POST", "/_sim/apps/" .. id .. "/events", { count = 5 })
    drive(c, function() return #seen >= 10 end, 20, "and the next ones")
    assert.is_true(c.errors[1].retrying)
    c:close()
  end)
end)
