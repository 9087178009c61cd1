-- The client against ucwa-sim, in JSON and XML: sign-in, joining meetings,
-- the lobby, cancel, errors, incoming invitations, limits, recovery.
local ucwa = require "ucwa"
local simmod = require "ucwa.sim"

local E = require "support.client_env"
local helpers = require "helpers"
local MEETING, drive = E.MEETING, helpers.drive

for _, format in ipairs{ "json", "xml" } do
  describe("client (" .. format .. ")", function()
    local sim, client, logs

    local function new_client(opts)
      opts = opts or {}
      logs = {}
      local o = { url = sim.url, username = "bot@contoso.com", password = "password", format = format,
                  log = function(level, msg) logs[#logs + 1] = level .. " " .. msg end }
      for k, v in pairs(opts) do o[k] = v end
      if opts.anonymous then o.username, o.password = nil, nil end
      if opts.username == false then o.username, o.password = nil, nil end
      local c = ucwa.client(o)
      c:on("error", function(err) c.last_error = err end)
      return c
    end

    local function ready(c)
      local fired = 0
      c:on("ready", function() fired = fired + 1 end)
      c:start()
      drive(c, function() return fired == 1 end, 5, "ready")
      return c
    end

    before_each(function()
      sim = simmod.start{ step_delay = 0.01 }
    end)

    after_each(function()
      if client then client:close() end
      client = nil
      sim:stop()
    end)

    it("signs in with a password and becomes available", function()
      client = ready(new_client())
      assert.equal("ready", client.state)
      local _, state = sim:control("GET", "/_sim/state")
      assert.equal(1, #state.applications)
      assert.equal("bot@contoso.com", state.applications[1].user)
      assert.is_true(state.applications[1].available)
      assert.is_true(state.applications[1].pget)
    end)

    -- Every string reachable from t (a client, say), at most `depth` tables deep.
    local function strings_in(t, depth, out, seen)
      out, seen = out or {}, seen or {}
      if seen[t] or depth < 0 then return out end
      seen[t] = true
      for k, v in pairs(t) do
        for _, x in ipairs{ k, v } do
          if type(x) == "string" then out[#out + 1] = x
          elseif type(x) == "table" then strings_in(x, depth - 1, out, seen) end
        end
      end
      return out
    end

    it("never logs, prints or keeps in its fields the password", function()
      client = ready(new_client{ password = "password" })
      for _, line in ipairs(logs) do
        assert.is_nil(line:find("password=", 1, true), line)
      end
      for _, v in ipairs(strings_in(client, 6)) do
        assert.is_false(v == "password", "a field of the client holds the password")
      end
    end)

    -- regression: the bearer token was readable as client._token.value
    it("never logs, prints or keeps in its fields the token", function()
      local token = E.password_token(sim, "bot@contoso.com", "password")
      client = ready(new_client{ username = false, password = false, token = token })
      for _, line in ipairs(logs) do
        assert.is_nil(line:find(token, 1, true), line)
      end
      assert.is_nil(tostring(client):find(token, 1, true))
      for _, v in ipairs(strings_in(client, 6)) do
        assert.is_nil(v:find(token, 1, true), "a field of the client holds the token")
      end
    end)

    it("joins the meeting, waits in the lobby, is admitted, completes with Success", function()
      client = ready(new_client())
      local seen = {}
      local inv = client:join_meeting{ onlineMeetingUri = MEETING, subject = "Standup" }
      for _, ev in ipairs{ "started", "updated", "completed" } do
        inv:on(ev, function(i) seen[#seen + 1] = ev .. ":" .. tostring(i.state) end)
      end
      assert.equal("onlineMeetingInvitation", inv.rel)
      assert.equal(32, #inv.operationId)
      drive(client, function()
        local _, m = sim:control("GET", "/_sim/meetings/DEMO1")
        for _, x in ipairs(m.members) do if x.state == "lobby" then return true end end
      end, 5, "the lobby")
      assert.is_false(inv:completed())
      sim:control("POST", "/_sim/meetings/DEMO1/admit", {})
      drive(client, function() return inv:completed() end, 5, "completion")
      assert.equal("Success", inv.status)
      assert.is_nil(inv.reason)
      assert.equal("Connected", inv.state)
      assert.equal("started:Connecting", seen[1])
      assert.equal("completed:Connected", seen[#seen])
      local completed = 0
      for _, s in ipairs(seen) do if s:match("^completed") then completed = completed + 1 end end
      assert.equal(1, completed)
      -- the conversation is reachable from the invitation
      local conv, err
      inv:conversation(function(c, e) conv, err = c, e end)
      drive(client, function() return conv or err end, 5, "conversation")
      assert.is_nil(err)
      assert.equal("conversation", conv.rel)
    end)

    it("matches events that arrive before the 201 Created by operationId", function()
      client = ready(new_client())
      sim:control("POST", "/_sim/faults/delay", { count = 1, seconds = 1, match = "/onlineMeetingInvitations" })
      local order = {}
      local inv = client:join_meeting({ onlineMeetingUri = MEETING, operationId = "op-early-1" }, function(i, err)
        order[#order + 1] = "created:" .. tostring(i and i.href ~= nil) .. ":" .. tostring(err)
      end)
      inv:on("started", function() order[#order + 1] = "started" end)
      inv:on("completed", function(i) order[#order + 1] = "completed:" .. i.status end)
      drive(client, function()
        sim:control("POST", "/_sim/meetings/DEMO1/admit", {})
        return #order >= 3
      end, 5, "events and the 201")
      assert.equal("started", order[1])
      assert.equal("completed:Success", order[#order - 1])
      assert.equal("created:true:nil", order[#order])
      assert.equal("op-early-1", inv.operationId)
      assert.matches("/onlineMeetingInvitations/%d+$", inv.href)
    end)

    it("completes with Failure and the reason when rejected from the lobby", function()
      client = ready(new_client())
      local inv = client:join_meeting{ onlineMeetingUri = MEETING }
      drive(client, function()
        local _, m = sim:control("GET", "/_sim/meetings/DEMO1")
        return #m.members > 0 and m.members[#m.members].state == "lobby"
      end, 5, "the lobby")
      sim:control("POST", "/_sim/meetings/DEMO1/reject", {})
      drive(client, function() return inv:completed() end, 5, "completion")
      assert.equal("Failure", inv.status)
      assert.equal("Forbidden", inv.reason.code)
      assert.equal("Denied", inv.reason.subcode)
      assert.matches("Denied", tostring(inv.reason))
    end)

    it("cancels while connecting, even before the 201 arrives", function()
      client = ready(new_client())
      local inv = client:join_meeting{ onlineMeetingUri = MEETING }
      local cancelled
      inv:cancel(function(ok, err) cancelled = ok or err end)
      drive(client, function() return inv:completed() end, 5, "completion")
      assert.is_true(cancelled)
      assert.equal("Failure", inv.status)
      assert.equal("Canceled", inv.reason.subcode)
    end)

    it("reports DestinationNotFound for an unknown meeting", function()
      client = ready(new_client())
      local got
      local inv = client:join_meeting({ onlineMeetingUri = "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:NOPE" },
        function(i, err) got = { i = i, err = err } end)
      drive(client, function() return got end, 5, "the answer")
      assert.is_nil(got.i)
      assert.equal(404, got.err.status)
      assert.equal("DestinationNotFound", got.err.subcode)
      assert.equal("Failure", inv.status)
      assert.equal("DestinationNotFound", inv.reason.subcode)
    end)

    it("refuses a subject of 251 characters before sending anything", function()
      client = ready(new_client())
      local _, before = sim:control("GET", "/_sim/state")
      local cb_inv, cb_err = "not called", nil
      local inv = client:join_meeting({ onlineMeetingUri = MEETING, subject = string.rep("x", 251) },
        function(i, e) cb_inv, cb_err = i, e end)
      -- one contract: always the invitation; the failure is its reason and the callback's err
      assert.equal("Failure", inv.status)
      assert.equal("ParameterValidationFailure", inv.reason.subcode)
      assert.is_nil(cb_inv)
      assert.equal(inv.reason, cb_err)
      client:step(0.05)
      local _, after = sim:control("GET", "/_sim/state")
      -- only the P-GET may have moved; no POST went out
      for _, line in ipairs(logs) do assert.is_nil(line:find("POST .*onlineMeetingInvitations")) end
      assert.equal(before.meetings[1].members and #before.meetings[1].members, #after.meetings[1].members)
      assert.has_error(function() client:join_meeting{ subject = "no uri" } end)
    end)

    it("accepts an incoming invitation", function()
      client = ready(new_client())
      local got
      client:on("invitation", function(inv) got = inv; inv:accept() end)
      local _, r = sim:control("POST", "/_sim/meetings/DEMO1/invite", { to = "bot@contoso.com", message = "join us" })
      drive(client, function() return got and got:completed() end, 5, "the invitation")
      assert.equal("onlineMeetingInvitation", got.rel)
      assert.equal("Incoming", got.direction)
      assert.equal("Success", got.status)
      -- link navigation: the embedded inviter, then a fresh GET of the invitation
      local from, refreshed
      got:from(function(p) from = p end)
      got:refresh(function(i, err) refreshed = i or err end)
      drive(client, function() return from and refreshed end, 5, "from and refresh")
      assert.equal("participant", from.rel)
      assert.equal("Alice Adams", from.name)
      assert.equal(got, refreshed)
      assert.equal("Connected", got.state)
      local _, rec = sim:control("GET", ("/_sim/invitations/%d"):format(r.invitation))
      assert.equal("Accepted", rec.state)
    end)

    it("declines an incoming invitation with a reason", function()
      client = ready(new_client())
      local got
      client:on("invitation", function(inv) got = inv; inv:decline("Local") end)
      local _, r = sim:control("POST", "/_sim/meetings/DEMO1/invite", { to = "bot@contoso.com" })
      drive(client, function() return got and got:completed() end, 5, "the invitation")
      assert.equal("Failure", got.status)
      assert.equal("Declined", got.reason.subcode)
      local _, rec = sim:control("GET", ("/_sim/invitations/%d"):format(r.invitation))
      assert.equal("Declined", rec.state)
      assert.has_error(function() got:decline("Sometimes") end)
    end)

    it("joins as an anonymous guest", function()
      client = ready(new_client{ anonymous = { meeting = MEETING, display_name = "Guest" } })
      local _, state = sim:control("GET", "/_sim/state")
      assert.is_true(state.applications[1].anonymous)
      local inv = client:join_meeting{ onlineMeetingUri = MEETING }
      drive(client, function()
        local _, m = sim:control("GET", "/_sim/meetings/DEMO1")
        return #m.members > 0 and m.members[#m.members].state == "lobby"
      end, 5, "the lobby")
      sim:control("POST", "/_sim/meetings/DEMO1/admit", {})
      drive(client, function() return inv:completed() end, 5, "completion")
      assert.equal("Success", inv.status)
      local _, m = sim:control("GET", "/_sim/meetings/DEMO1")
      assert.equal("Guest", m.members[#m.members].name)
    end)

    it("renews an expired token and carries on", function()
      client = ready(new_client())
      local grants = E.count_token_grants(logs)
      sim:control("POST", "/_sim/tokens/expire", {})
      local inv = client:join_meeting{ onlineMeetingUri = MEETING }
      drive(client, function() return inv.href ~= nil end, 5, "the 201")
      assert.equal(grants + 1, E.count_token_grants(logs))
      E.admit_until_complete(client, sim, inv)
      assert.equal("Success", inv.status)
    end)

    it("creates the application again when the server forgets it, and says so", function()
      client = ready(new_client())
      local resumed
      client:on("resumed", function(info) resumed = info end)
      local _, state = sim:control("GET", "/_sim/state")
      sim:control("POST", ("/_sim/apps/%d/forget"):format(state.applications[1].id), {})
      drive(client, function() return resumed end, 5, "resumed")
      assert.equal("ApplicationNotFound", resumed.reason)
      drive(client, function() return client.state == "ready" end, 5, "ready again")
      local inv = client:join_meeting{ onlineMeetingUri = MEETING }
      sim:control("POST", "/_sim/meetings/DEMO1/admit", {})
      E.admit_until_complete(client, sim, inv)
      assert.equal("Success", inv.status)
    end)

    it("runs coroutine-style bots with spawn and wait", function()
      client = ready(new_client())
      local result = {}
      client:spawn(function()
        local inv = client:join_meeting{ onlineMeetingUri = MEETING }
        result.status, result.reason = inv:wait()
        local conv, err = inv:conversation()
        result.conv, result.err = conv, err
      end)
      drive(client, function()
        sim:control("POST", "/_sim/meetings/DEMO1/admit", {})
        return result.conv or result.err
      end, 5, "the coroutine")
      assert.equal("Success", result.status)
      assert.equal("conversation", result.conv.rel)
    end)
  end)
end

describe("client sessions over time", function()
  local sim
  after_each(function() if sim then sim:stop() end end)

  it("renews a guest's token before it expires, keeping the same identity and application", function()
    sim = simmod.start{ step_delay = 0.01, anon_token_lifetime = 2, token_lifetime = 2 }
    local logs = {}
    local client = ucwa.client{ url = sim.url, anonymous = { meeting = MEETING, display_name = "Guest" },
                                log = function(level, msg) logs[#logs + 1] = level .. " " .. msg end }
    local ready, resumed = false, nil
    client:on("ready", function() ready = true end)
    client:on("resumed", function(info) resumed = info end)
    client:start()
    drive(client, function() return ready end, 5, "ready")
    local first = E.count_token_grants(logs)
    local _, before = sim:control("GET", "/_sim/state")
    drive(client, function() return E.count_token_grants(logs) > first end, 5, "a renewed token")
    -- past the first token's lifetime: the channel and requests still work
    local t = require("socket").gettime() + 1.5
    drive(client, function() return require("socket").gettime() > t end, 3, "time passing")
    local _, after = sim:control("GET", "/_sim/state")
    assert.equal(1, #after.applications)
    assert.equal(before.applications[1].id, after.applications[1].id)
    assert.is_nil(resumed)
    local inv = client:join_meeting{ onlineMeetingUri = MEETING }
    E.admit_until_complete(client, sim, inv)
    assert.equal("Success", inv.status)
    client:close()
  end)

  it("deletes the application on close", function()
    sim = simmod.start{ step_delay = 0.01 }
    local client = ucwa.client{ url = sim.url, username = "bot@contoso.com", password = "password" }
    local ready, closed = false, 0
    client:on("ready", function() ready = true end)
    client:on("closed", function() closed = closed + 1 end)
    client:start()
    drive(client, function() return ready end, 5, "ready")
    local _, st = sim:control("GET", "/_sim/state")
    assert.equal(1, #st.applications)
    client:close()
    client:close() -- idempotent
    assert.equal(1, closed)
    assert.equal("closed", client.state)
    _, st = sim:control("GET", "/_sim/state")
    assert.equal(0, #st.applications)
    local got
    client:join_meeting({ onlineMeetingUri = MEETING }, function(_, err) got = err end)
    assert.equal("Closed", got.code)
  end)
end)
