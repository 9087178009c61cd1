-- ucwa-sim: one-to-one instant messages on the wire, JSON and XML:
-- startMessaging and its checks, the messagingInvitation both sides see,
-- the first message carried as given, accept / decline / cancel, messages
-- both ways through each side's event channel, stop / addMessaging, and the
-- control routes that play the other side.
local C = require "support.sim_client"
local core = require "ucwa.core"

local function unescape(s)
  return (core.data_url(s))
end

local function make_available(s)
  assert.equal(204, (s:post(s.app.embedded.me.links.makeMeAvailable.href, { signInAs = "Online" })))
end

-- POSTs `t` (with _links) encoded in the session's format.
local function post(s, href, t)
  local body, ctype = core.encode(t, s.fmt)
  return s:request("POST", href, body, ctype)
end

local function start_href(s)
  return s.app.embedded.communication.links.startMessaging.href
end

describe("ucwa-sim instant messages", function()
  local sim
  C.use_sim_each(function(s) sim = s end)

  C.each_format(function(fmt)
    it("carries a startMessaging from one user to the other, and messages both ways", function()
      local alice = C.session(sim, "alice@contoso.com", fmt)
      local bob = C.session(sim, "bob@contoso.com", fmt)
      make_available(bob)
      local first = "data:text/plain;charset=utf-8,Hi+Bob%2C+lunch%3F"
      local st, h = post(alice, start_href(alice), { to = "sip:bob@contoso.com", subject = "Lunch",
        importance = "Urgent", operationId = "op-1", _links = { message = { href = first } } })
      assert.equal(201, st)
      assert.matches("/communication/messagingInvitations/%d+$", h.location)

      local started = alice:wait_event(C.is("started", "messagingInvitation"))
      assert.equal("communication", started.sender)
      local out = started.resource
      assert.equal("Outgoing", out.props.direction)
      assert.equal("op-1", out.props.operationId)
      assert.equal("Connecting", out.props.state)
      assert.is_string(out.links.cancel.href)
      assert.is_string(out.links.messaging.href)
      local added = alice:wait_event(C.is("added", "conversation"))
      assert.equal("Connecting", added.resource.props.state)
      assert.is_nil(added.resource.links.onlineMeeting) -- one to one: no meeting
      assert.is_nil(added.resource.links.lobby)

      local ring = bob:wait_event(C.is("started", "messagingInvitation")).resource
      assert.equal("Incoming", ring.props.direction)
      assert.equal("Lunch", ring.props.subject)
      assert.equal("Urgent", ring.props.importance)
      assert.equal("sip:bob@contoso.com", ring.props.to)
      assert.equal(first, ring.links.message.href)
      assert.equal("Hi Bob, lunch?", unescape(ring.links.message.href))
      assert.equal("Alice Adams", ring.embedded.from.props.name)
      assert.equal("Incoming", bob:wait_event(C.is("added", "conversation")).resource.props.state)
      assert.equal(204, (bob:request("POST", ring.links.accept.href)))

      -- messaging connects, then the invitation completes (each side)
      local function connected(e)
        return e.type == "updated" and e.link.rel == "messaging" and e.resource.props.state == "Connected"
      end
      local b_msg = bob:wait_event(connected).resource
      assert.equal("Success", bob:wait_event(C.is("completed", "messagingInvitation")).status)
      local a_msg = alice:wait_event(connected).resource
      assert.equal("Success", alice:wait_event(C.is("completed", "messagingInvitation")).status)

      assert.equal(201, (alice:request("POST", a_msg.links.sendMessage.href, "to bob", "text/plain")))
      local got = bob:wait_event(function(e)
        return e.link.rel == "message" and e.resource and e.resource.props.direction == "Incoming"
      end)
      assert.equal("conversation", got.sender)
      assert.equal("to bob", unescape(got.resource.links.plainMessage.href))
      assert.equal("Alice Adams", got.resource.links.participant.title)
      assert.equal(201, (bob:request("POST", b_msg.links.sendMessage.href, "to alice", "text/plain")))
      local back = alice:wait_event(function(e)
        return e.link.rel == "message" and e.resource and e.resource.props.direction == "Incoming"
      end)
      assert.equal("to alice", unescape(back.resource.links.plainMessage.href))

      -- addMessaging while messaging is on: 409
      assert.equal(409, (post(alice, C.path_of(a_msg.href) .. "/addMessaging", {})))

      -- stopMessaging: both sides Disconnected, addMessaging offered
      assert.equal(204, (bob:request("POST", b_msg.links.stopMessaging.href)))
      local off = alice:wait_event(function(e)
        return e.link.rel == "messaging" and e.resource and e.resource.props.state == "Disconnected"
      end).resource
      assert.is_nil(off.links.sendMessage)
      assert.equal(409, (alice:request("POST", a_msg.links.sendMessage.href, "late", "text/plain")))
      st = post(alice, off.links.addMessaging.href, { operationId = "op-2" })
      assert.equal(201, st)
      local again = bob:wait_event(C.is("started", "messagingInvitation")).resource
      assert.equal(204, (bob:request("POST", again.links.accept.href)))
      assert.equal("Success", alice:wait_event(C.is("completed", "messagingInvitation")).status)
    end)

    it("refuses a bad startMessaging with ParameterValidationFailure, and nothing starts", function()
      local alice = C.session(sim, "alice@contoso.com", fmt)
      local href = start_href(alice)
      local cases = {
        { { subject = "x" }, "to" },
        { { to = "bob@contoso.com" }, "to" },
        { { to = "sip:bob@contoso.com", importance = "High" }, "importance" },
        { { to = "sip:bob@contoso.com", subject = ("s"):rep(251) }, "subject" },
        { { to = "sip:bob@contoso.com", operationId = ("o"):rep(51) }, "operationId" },
        { { to = "sip:bob@contoso.com", _links = { message = { href = "http://x/y" } } }, "message" },
      }
      for _, case in ipairs(cases) do
        local st, _, body = post(alice, href, case[1])
        assert.equal(400, st, case[2])
        local e = C.error_model(body, fmt)
        assert.equal("ParameterValidationFailure", e.subcode, case[2])
      end
      local st = post(alice, href, { to = "sip:alice@contoso.com" })
      assert.equal(409, st)
      local _, state = sim:control("GET", "/_sim/state")
      assert.same({}, state.messaging)
    end)

    it("completes with Failure when the other side declines, nobody answers, or the sender cancels", function()
      sim = C.start({ invite_timeout = 0.5 })
      finally(function() C.stop(sim) end)
      local alice = C.session(sim, "alice@contoso.com", fmt)
      local bob = C.session(sim, "bob@contoso.com", fmt)
      make_available(bob)
      post(alice, start_href(alice), { to = "sip:bob@contoso.com" })
      local ring = bob:wait_event(C.is("started", "messagingInvitation")).resource
      assert.equal(204, (post(bob, ring.links.decline.href, { reason = "Local" })))
      assert.equal("Declined", bob:wait_event(C.is("completed", "messagingInvitation")).reason.subcode)
      local failed = alice:wait_event(C.is("completed", "messagingInvitation"))
      assert.equal("Failure", failed.status)
      assert.equal("Declined", failed.reason.subcode)
      assert.equal("conversation", alice:wait_event(C.is("deleted", "conversation")).link.rel)

      post(alice, start_href(alice), { to = "sip:bob@contoso.com" })
      local timeout = alice:wait_event(C.is("completed", "messagingInvitation"), 5)
      assert.equal("Failure", timeout.status)
      assert.equal("Timeout", timeout.reason.code)
      assert.equal("Timeout", bob:wait_event(C.is("completed", "messagingInvitation")).reason.code)

      post(alice, start_href(alice), { to = "sip:bob@contoso.com" })
      local out = alice:wait_event(C.is("started", "messagingInvitation")).resource
      bob:wait_event(C.is("started", "messagingInvitation"))
      assert.equal(204, (alice:request("POST", out.links.cancel.href)))
      assert.equal("Failure", alice:wait_event(C.is("completed", "messagingInvitation")).status)
      local theirs = bob:wait_event(C.is("completed", "messagingInvitation"))
      assert.equal("Failure", theirs.status)
      assert.equal("Canceled", theirs.reason.subcode)
    end)
  end)

  it("plays a user who is not signed in: it accepts, and what the bot says is kept", function()
    local bot = C.session(sim, "bot@contoso.com", "json")
    post(bot, start_href(bot), { to = "sip:alice@contoso.com" })
    local m = bot:wait_event(function(e)
      return e.link.rel == "messaging" and e.resource and e.resource.props.state == "Connected"
    end).resource
    assert.equal("Success", bot:wait_event(C.is("completed", "messagingInvitation")).status)
    bot:request("POST", m.links.sendMessage.href, "hello alice", "text/plain")
    assert.is_true(C.eventually(function()
      local _, t = sim:control("GET", "/_sim/users/alice@contoso.com/messages")
      return #t.messages == 1 and t.messages[1].text == "hello alice" and t.messages[1].from == "bot@contoso.com"
    end))
    -- alice answers, and types, in that conversation
    local st = sim:control("POST", "/_sim/users/alice@contoso.com/typing", { to = "bot@contoso.com" })
    assert.equal(200, st)
    bot:wait_event(C.is("added", "participant", { ["in"] = "typingParticipants" }))
    st = sim:control("POST", "/_sim/users/alice@contoso.com/message", { to = "bot@contoso.com", text = "hi bot" })
    assert.equal(200, st)
    local got = bot:wait_event(function(e)
      return e.link.rel == "message" and e.resource and e.resource.props.direction == "Incoming"
    end)
    assert.equal("hi bot", unescape(got.resource.links.plainMessage.href))
  end)

  it("an invitation whose every ring went away without a word times out for the sender", function()
    sim = C.start({ invite_timeout = 0.5 })
    finally(function() C.stop(sim) end)
    local alice = C.session(sim, "alice@contoso.com", "json")
    local bob = C.session(sim, "bob@contoso.com", "json")
    make_available(bob)
    post(alice, start_href(alice), { to = "sip:bob@contoso.com" })
    bob:wait_event(C.is("started", "messagingInvitation"))
    assert.equal(204, (bob:request("DELETE", bob.app.href)))
    local done = alice:wait_event(C.is("completed", "messagingInvitation"), 5)
    assert.equal("Failure", done.status)
    assert.equal("Timeout", done.reason.code)
  end)

  it("leaving the conversation ends the session for the other side", function()
    local alice = C.session(sim, "alice@contoso.com", "json")
    local bob = C.session(sim, "bob@contoso.com", "json")
    make_available(bob)
    post(alice, start_href(alice), { to = "sip:bob@contoso.com" })
    local conv = alice:wait_event(C.is("added", "conversation")).link.href
    local ring = bob:wait_event(C.is("started", "messagingInvitation")).resource
    bob:request("POST", ring.links.accept.href)
    assert.equal("Success", alice:wait_event(C.is("completed", "messagingInvitation")).status)
    assert.equal(204, (alice:request("DELETE", conv)))
    local gone = bob:wait_event(C.is("deleted", "participant"))
    assert.equal("Alice Adams", gone.link.title)
    local off = bob:wait_event(function(e)
      return e.link.rel == "messaging" and e.resource and e.resource.props.state == "Disconnected"
    end).resource
    assert.is_string(off.links.addMessaging.href)
    local _, state = sim:control("GET", "/_sim/state")
    assert.is_true(state.messaging[1].ended)
  end)

  it("control routes: invite and message need a user, a recipient signed in, and text", function()
    local bot = C.session(sim, "bot@contoso.com", "json")
    local st, r = sim:control("POST", "/_sim/users/nobody@contoso.com/message", { to = "bot@contoso.com", text = "x" })
    assert.equal(404, st)
    assert.matches("no user", r.error)
    st = sim:control("POST", "/_sim/users/alice@contoso.com/message", { to = "bot@contoso.com" })
    assert.equal(400, st)
    st, r = sim:control("POST", "/_sim/users/alice@contoso.com/invite", { to = "sip:Alice@contoso.com" })
    assert.equal(400, st)
    assert.equal("to must be someone else", r.error)
    st = sim:control("POST", "/_sim/users/alice@contoso.com/typing", {})
    assert.equal(400, st)
    st, r = sim:control("POST", "/_sim/users/alice@contoso.com/invite", { to = "bot@contoso.com" })
    assert.equal(409, st) -- the bot has not called makeMeAvailable
    assert.matches("no available application", r.error)
    make_available(bot)
    st, r = sim:control("POST", "/_sim/users/alice@contoso.com/invite",
      { to = "bot@contoso.com", message = "ping", importance = "Emergency" })
    assert.equal(200, st)
    assert.equal("Ringing", r.state)
    local ring = bot:wait_event(C.is("started", "messagingInvitation")).resource
    assert.equal("ping", unescape(ring.links.message.href))
    assert.equal("Emergency", ring.props.importance)
    st = sim:control("POST", "/_sim/users/alice@contoso.com/invite", { to = "bot@contoso.com", importance = "Low" })
    assert.equal(400, st)
    local _, state = sim:control("GET", "/_sim/state")
    assert.equal(1, #state.messaging)
    assert.same({ "alice@contoso.com", "bot@contoso.com" }, state.messaging[1].users)
  end)
end)
