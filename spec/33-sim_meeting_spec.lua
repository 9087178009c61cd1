-- ucwa-sim: joinOnlineMeeting / startOnlineMeeting, the onlineMeetingInvitation
-- operation through the lobby, admit/reject/cancel, and the synchronous errors.
local C = require "support.sim_client"

local DEMO1 = "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:DEMO1"

local function join(s, body)
  local st, h, b = s:post(s.app.embedded.communication.links.joinOnlineMeeting.href, body)
  return st, h, b
end

describe("ucwa-sim meetings", function()
  local sim
  local restart = C.use_sim_each(function(s) sim = s end)

  C.each_format(function(fmt)
    it("joins through the lobby: started, inLobby, admitted, completed Success", function()
      local bob = C.session(sim, "bob@contoso.com", fmt)
      local st, h = join(bob, { onlineMeetingUri = DEMO1, operationId = "op-1", subject = "Standup",
        importance = "Normal", threadId = "t-1" })
      assert.equal(201, st)
      local inv_href = C.path_of(h["location"])
      assert.matches("/communication/onlineMeetingInvitations/%d+$", inv_href)

      local started = bob:wait_event(C.is("started", "onlineMeetingInvitation"))
      assert.equal("communication", started.sender)
      assert.equal(inv_href, started.link.href)
      local inv = started.resource
      assert.equal("onlineMeetingInvitation", inv.rel)
      assert.equal("op-1", inv.props.operationId)
      assert.equal("Connecting", inv.props.state)
      assert.equal("Outgoing", inv.props.direction)
      assert.equal(DEMO1, inv.props.onlineMeetingUri)
      assert.is_string(inv.links.cancel.href)
      assert.is_string(inv.links.conversation.href)
      -- the same property names as the reference sample
      local ref = C.sample("onlineMeetingInvitation_ref.get-" .. fmt .. "-response.1", fmt)
      for name in pairs(inv.props) do
        assert.is_not_nil(ref.props[name], "property not in the reference: " .. name)
      end

      local lobby = bob:wait_event(C.is("added", "participant", { ["in"] = "lobby" }))
      assert.equal("conversation", lobby.sender)
      local p = lobby.resource
      assert.equal("participant", p.rel)
      assert.is_true(p.props.inLobby == true or p.props.inLobby == "True")
      assert.equal("sip:bob@contoso.com", p.props.uri)

      local status, r = sim:control("POST", "/_sim/meetings/DEMO1/admit", { user = "bob@contoso.com" })
      assert.equal(200, status)
      assert.same({ "bob@contoso.com" }, r.admitted)

      local done, seen = bob:wait_event(C.is("completed", "onlineMeetingInvitation"))
      assert.equal("Success", done.status)
      assert.equal("Connected", done.resource.props.state)
      local in_roster = false
      for _, e in ipairs(seen) do
        if e.type == "added" and e.link.rel == "participant" and e.in_ and e.in_.rel == "attendees" then
          in_roster = true
        end
      end
      assert.is_true(in_roster, "the participant is in the roster before completed")
      local now = bob:get(inv_href)
      assert.equal("Connected", now.props.state)
      local conv = bob:get(inv.links.conversation.href)
      assert.equal("Connected", conv.props.state)
      for _, rel in ipairs({ "attendees", "leaders", "lobby", "messaging", "participants", "localParticipant" }) do
        assert.is_string(conv.links[rel].href, rel)
      end
    end)

    it("lets the organizer's application admit from the lobby", function()
      local alice = C.session(sim, "alice@contoso.com", fmt)
      join(alice, { onlineMeetingUri = DEMO1 })
      local a_done = alice:wait_event(C.is("completed", "onlineMeetingInvitation"))
      assert.equal("Success", a_done.status)
      local bob = C.session(sim, "bob@contoso.com", fmt)
      join(bob, { onlineMeetingUri = DEMO1 })
      local in_lobby = alice:wait_event(C.is("added", "participant", { ["in"] = "lobby" }))
      assert.equal("sip:bob@contoso.com", in_lobby.resource.props.uri)
      local admit = in_lobby.resource.links.admit.href
      assert.is_string(in_lobby.resource.links.reject.href)
      assert.equal(204, (alice:post(admit, "")))
      local b_done = bob:wait_event(C.is("completed", "onlineMeetingInvitation"))
      assert.equal("Success", b_done.status)
      alice:wait_event(C.is("added", "participant", { ["in"] = "attendees" }))
    end)

    it("completes with Failure Denied when rejected from the lobby", function()
      local bob = C.session(sim, "bob@contoso.com", fmt)
      join(bob, { onlineMeetingUri = DEMO1 })
      bob:wait_event(C.is("added", "participant", { ["in"] = "lobby" }))
      sim:control("POST", "/_sim/meetings/DEMO1/reject", { user = "bob@contoso.com" })
      local done = bob:wait_event(C.is("completed", "onlineMeetingInvitation"))
      assert.equal("Failure", done.status)
      assert.equal("Forbidden", done.reason.code)
      assert.equal("Denied", done.reason.subcode)
      assert.is_string(done.reason.message)
    end)

    it("cancels a join waiting in the lobby", function()
      local bob = C.session(sim, "bob@contoso.com", fmt)
      local _, h = join(bob, { onlineMeetingUri = DEMO1, operationId = "c-1" })
      local lobby = bob:wait_event(C.is("added", "participant", { ["in"] = "lobby" }))
      assert.is_not_nil(lobby)
      local inv = bob:get(h["location"])
      assert.equal(204, (bob:post(inv.links.cancel.href, "")))
      local done = bob:wait_event(C.is("completed", "onlineMeetingInvitation"))
      assert.equal("Failure", done.status)
      assert.equal("Canceled", done.reason.subcode)
      assert.equal("c-1", done.resource.props.operationId)
      assert.equal(409, (bob:post(inv.links.cancel.href, "")))
    end)

    it("gives the documented synchronous errors", function()
      local bob = C.session(sim, "bob@contoso.com", fmt)
      local function check(body, status, code, subcode)
        local st, _, b = join(bob, body)
        assert.equal(status, st)
        local e = C.error_model(b, fmt)
        assert.equal(code, e.code)
        assert.equal(subcode, e.subcode)
      end
      check({ onlineMeetingUri = "sip:nobody@contoso.com;gruu;opaque=app:conf:focus:id:NOPE" },
        404, "NotFound", "DestinationNotFound")
      check({ onlineMeetingUri = DEMO1, subject = string.rep("s", 251) }, 400, "BadRequest",
        "ParameterValidationFailure")
      check({ onlineMeetingUri = DEMO1, operationId = string.rep("o", 51) }, 400, "BadRequest",
        "ParameterValidationFailure")
      check({ onlineMeetingUri = DEMO1, anonymousDisplayName = "Guest" }, 400, "BadRequest",
        "ParameterValidationFailure")
      local st, _, b = bob:request("POST", bob.app.embedded.communication.links.joinOnlineMeeting.href,
        fmt == "xml" and "<input><oops" or "{oops")
      assert.equal(400, st)
      assert.equal("BadRequest", C.error_model(b, fmt).code)
    end)
  end)

  it("starts an adhoc meeting as its organizer (no lobby)", function()
    local bob = C.session(sim, "bob@contoso.com")
    local st = bob:post(bob.app.embedded.communication.links.startOnlineMeeting.href,
      { subject = "Adhoc", operationId = "adhoc-1" })
    assert.equal(201, st)
    local done, seen = bob:wait_event(C.is("completed", "onlineMeetingInvitation"))
    assert.equal("Success", done.status)
    assert.equal("adhoc-1", done.resource.props.operationId)
    assert.matches("opaque=app:conf:focus:id:", done.resource.props.onlineMeetingUri)
    local leader = false
    for _, e in ipairs(seen) do
      if e.type == "added" and e.in_ and e.in_.rel == "leaders" then leader = true end
      assert.is_false(e.in_ ~= nil and e.in_.rel == "lobby")
    end
    assert.is_true(leader)
  end)

  it("lets an anonymous user join with anonymousDisplayName, only the meeting of its token", function()
    local tok = C.anon_token(sim, DEMO1, "DEMO1")
    local guest = C.session(sim, nil, "json", { token = tok, input = { userAgent = "guest", culture = "en-US" } })
    local st = join(guest, { onlineMeetingUri = DEMO1 })
    assert.equal(400, st) -- anonymousDisplayName is required
    sim:control("POST", "/_sim/meetings", { id = "OTHER", organizer = "bob@contoso.com" })
    local st2 = join(guest, { onlineMeetingUri = "sip:bob@contoso.com;gruu;opaque=app:conf:focus:id:OTHER",
      anonymousDisplayName = "Guest" })
    assert.equal(403, st2)
    assert.equal(201, (join(guest, { onlineMeetingUri = DEMO1, anonymousDisplayName = "Visitor" })))
    local lobby = guest:wait_event(C.is("added", "participant", { ["in"] = "lobby" }))
    assert.equal("Visitor", lobby.resource.props.name)
    assert.is_true(lobby.resource.props.anonymous)
    sim:control("POST", "/_sim/meetings/DEMO1/admit", {})
    local done = guest:wait_event(C.is("completed", "onlineMeetingInvitation"))
    assert.equal("Success", done.status)
    assert.equal("Visitor", done.resource.props.anonymousDisplayName)
  end)

  it("fails a lobby wait after --lobby-timeout", function()
    restart({ lobby_timeout = 0.3 })
    local bob = C.session(sim, "bob@contoso.com")
    join(bob, { onlineMeetingUri = DEMO1 })
    local done = bob:wait_event(C.is("completed", "onlineMeetingInvitation"))
    assert.equal("Failure", done.status)
    assert.equal("Timeout", done.reason.subcode)
  end)

  it("fails the join of a meeting that ends while in the lobby, and deletes conversations", function()
    local alice = C.session(sim, "alice@contoso.com")
    join(alice, { onlineMeetingUri = DEMO1 })
    alice:wait_event(C.is("completed", "onlineMeetingInvitation"))
    local bob = C.session(sim, "bob@contoso.com")
    join(bob, { onlineMeetingUri = DEMO1 })
    bob:wait_event(C.is("added", "participant", { ["in"] = "lobby" }))
    assert.equal(200, (sim:control("POST", "/_sim/meetings/DEMO1/end")))
    local done = bob:wait_event(C.is("completed", "onlineMeetingInvitation"))
    assert.equal("Failure", done.status)
    assert.equal("Ended", done.reason.subcode)
    local gone = alice:wait_event(C.is("deleted", "conversation"))
    assert.equal("Ended", gone.reason.subcode)
  end)

  it("refuses joins from a token without Conversations.Initiate (403)", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(require("cjson").encode({
      users = { { username = "reader@contoso.com", password = "pw", scopes = { "Conversations.Receive" } },
        { username = "alice@contoso.com" } },
      meetings = { { id = "DEMO1", organizer = "alice@contoso.com" } },
    }))
    f:close()
    finally(function() os.remove(path) end)
    restart({ directory = path })
    local tok = C.token(sim, "reader@contoso.com", "pw")
    local s = C.session(sim, nil, "json", { token = tok })
    assert.is_nil(s.app.embedded.communication.links.joinOnlineMeeting)
    local st, _, b = s:post(s.app.href .. "/communication/onlineMeetingInvitations", { onlineMeetingUri = DEMO1 })
    assert.equal(403, st)
    assert.equal("Forbidden", require("cjson").decode(b).code)
  end)
end)
