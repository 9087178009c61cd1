-- ucwa-sim: conversations in a meeting: messaging both ways, incoming
-- invitations (accept / decline), participants joining and leaving.
local C = require "support.sim_client"

local DEMO1 = "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:DEMO1"

local function join(s, uri)
  local st = s:post(s.app.embedded.communication.links.joinOnlineMeeting.href, { onlineMeetingUri = uri or DEMO1 })
  assert.equal(201, st)
end

local function make_available(s)
  assert.equal(204, (s:post(s.app.embedded.me.links.makeMeAvailable.href, { signInAs = "Online" })))
end

local function unescape(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

describe("ucwa-sim conversations", function()
  local sim
  C.use_sim_each(function(s) sim = s end, { auto_admit = true })

  C.each_format(function(fmt)
    it("sends and receives messages as data: links", function()
      local alice = C.session(sim, "alice@contoso.com", fmt)
      join(alice)
      local a_done = alice:wait_event(C.is("completed", "onlineMeetingInvitation"))
      local bob = C.session(sim, "bob@contoso.com", fmt)
      join(bob)
      local b_done = bob:wait_event(C.is("completed", "onlineMeetingInvitation"))
      local conv = bob:get(b_done.resource.links.conversation.href)
      local messaging = bob:get(conv.links.messaging.href)
      assert.equal("Connected", messaging.props.state)
      local send = messaging.links.sendMessage.href
      local st, h = bob:request("POST", send .. "?operationId=m-1", "Hello, world & co", "text/plain")
      assert.equal(201, st)
      assert.matches("/messaging/messages/%d+$", h["location"])
      local mine = bob:wait_event(C.is("completed", "message"))
      assert.equal("Success", mine.status)
      assert.equal("Outgoing", mine.resource.props.direction)

      local got = alice:wait_event(C.is("completed", "message"))
      assert.equal("conversation", got.sender)
      assert.equal(C.path_of(a_done.resource.links.conversation.href), got.sender == "conversation"
        and C.path_of(a_done.resource.links.conversation.href))
      local m = got.resource
      assert.equal("message", m.rel)
      assert.equal("Incoming", m.props.direction)
      local plain = m.links.plainMessage.href
      assert.matches("^data:text/plain;charset=utf%-8,", plain)
      assert.equal("Hello, world & co", unescape(plain:match(",(.*)$")))
      assert.equal("Bob Brown", m.links.participant.title)

      -- html in, both forms out
      bob:request("POST", send, "<b>bold</b> move", "text/html")
      local html = alice:wait_event(C.is("completed", "message")).resource
      assert.equal("Incoming", html.props.direction)
      assert.matches("^data:text/html;charset=utf%-8,", html.links.htmlMessage.href)
      assert.equal("bold move", unescape(html.links.plainMessage.href:match(",(.*)$")))

      -- from a participant through the control API
      sim:control("POST", "/_sim/meetings/DEMO1/message", { from = "alice@contoso.com", text = "hi bob" })
      local ctl = bob:wait_event(function(e)
        return e.type == "completed" and e.link.rel == "message" and e.resource.props.direction == "Incoming"
      end).resource
      assert.equal("hi bob", unescape(ctl.links.plainMessage.href:match(",(.*)$")))
    end)

    it("delivers an incoming invitation; accept connects it", function()
      local bot = C.session(sim, "bot@contoso.com", fmt)
      make_available(bot)
      local status, r = sim:control("POST", "/_sim/meetings/DEMO1/invite",
        { from = "alice@contoso.com", to = "bot@contoso.com", message = "join us" })
      assert.equal(200, status)
      local started = bot:wait_event(C.is("started", "onlineMeetingInvitation"))
      local inv = started.resource
      assert.equal("Incoming", inv.props.direction)
      assert.equal(DEMO1, inv.props.onlineMeetingUri)
      assert.is_string(inv.links.accept.href)
      assert.is_string(inv.links.decline.href)
      assert.is_nil(inv.links.cancel)
      assert.equal("Alice Adams", inv.links.from.title)
      assert.equal("join us", unescape(inv.links.message.href:match(",(.*)$")))
      assert.equal("participant", inv.embedded.from.rel)
      assert.equal(204, (bot:post(inv.links.accept.href .. "?sessionContext=" .. "abc", "")))
      local done = bot:wait_event(C.is("completed", "onlineMeetingInvitation"))
      assert.equal("Success", done.status)
      assert.equal("Connected", done.resource.props.state)
      local _, rec = sim:control("GET", ("/_sim/invitations/%d"):format(r.invitation))
      assert.equal("Accepted", rec.state)
      local _, m = sim:control("GET", "/_sim/meetings/DEMO1")
      local keys = {}
      for _, x in ipairs(m.members) do keys[x.key] = x.state end
      assert.equal("in", keys["bot@contoso.com"])
    end)

    it("declines an incoming invitation: completed Failure here, Declined for the inviter", function()
      local bot = C.session(sim, "bot@contoso.com", fmt)
      make_available(bot)
      local _, r = sim:control("POST", "/_sim/meetings/DEMO1/invite", { to = "bot@contoso.com" })
      local inv = bot:wait_event(C.is("started", "onlineMeetingInvitation")).resource
      assert.equal(204, (bot:post(inv.links.decline.href, { reason = "Local" })))
      local done = bot:wait_event(C.is("completed", "onlineMeetingInvitation"))
      assert.equal("Failure", done.status)
      assert.equal("Declined", done.reason.subcode)
      local _, rec = sim:control("GET", ("/_sim/invitations/%d"):format(r.invitation))
      assert.equal("Declined", rec.state)
    end)
  end)

  it("refuses to invite a user with no available application", function()
    C.session(sim, "bot@contoso.com")
    local status = sim:control("POST", "/_sim/meetings/DEMO1/invite", { to = "bot@contoso.com" })
    assert.equal(409, status)
  end)

  it("shows participants joining and leaving, and the roster collections", function()
    local bob = C.session(sim, "bob@contoso.com")
    join(bob)
    local done = bob:wait_event(C.is("completed", "onlineMeetingInvitation"))
    sim:control("POST", "/_sim/meetings/DEMO1/join", { user = "carol@fabrikam.com", name = "Carol", lobby = false })
    local added = bob:wait_event(C.is("added", "participant", { ["in"] = "attendees" }))
    while added.resource.props.name ~= "Carol" do
      added = bob:wait_event(C.is("added", "participant", { ["in"] = "attendees" }))
    end
    local conv = bob:get(done.resource.links.conversation.href)
    local attendees = bob:get(conv.links.attendees.href)
    local names = {}
    for _, l in ipairs(attendees.links.participant) do names[l.title] = true end
    assert.is_true(names.Carol and names["Bob Brown"])
    local p = bob:get(added.link.href)
    assert.equal("Carol", p.props.name)
    -- promoted: updated, now in leaders
    local st, r = sim:control("POST", "/_sim/meetings/DEMO1/promote", { user = "carol@fabrikam.com" })
    assert.equal(200, st)
    assert.equal("Leader", r.role)
    local up = bob:wait_event(C.is("updated", "participant", { ["in"] = "leaders" }))
    assert.equal("Leader", up.resource.props.role)
    sim:control("POST", "/_sim/meetings/DEMO1/leave", { user = "carol@fabrikam.com" })
    local gone = bob:wait_event(C.is("deleted", "participant"))
    assert.equal(added.link.href, gone.link.href)
    -- leaving the conversation
    assert.equal(204, (bob:request("DELETE", conv.href)))
    bob:wait_event(C.is("deleted", "conversation"))
    local _, m = sim:control("GET", "/_sim/meetings/DEMO1")
    assert.equal(0, #m.members)
  end)
end)

-- Typing (setIsTyping, typingParticipants) and a leader's eject / promote /
-- demote links, in both formats.
describe("ucwa-sim typing and leaders' actions", function()
  local sim
  C.use_sim_each(function(s) sim = s end, { auto_admit = true, typing_timeout = 0.5 })

  -- Joins and returns the conversation resource and the completed event.
  local function joined(s)
    join(s)
    local done = s:wait_event(C.is("completed", "onlineMeetingInvitation"))
    return s:get(done.resource.links.conversation.href), done
  end

  local function member(key)
    local _, m = sim:control("GET", "/_sim/meetings/DEMO1")
    for _, x in ipairs(m.members) do
      if x.key == key then return x end
    end
  end

  -- The next participant event `type_` in `in_` about `name`'s participant.
  local function wait_participant(s, type_, in_, href)
    return s:wait_event(function(e)
      return e.type == type_ and e.link.rel == "participant" and e.in_ and e.in_.rel == in_
        and (href == nil or e.link.href == href)
    end)
  end

  C.each_format(function(fmt)
    it("setIsTyping shows the typer in typingParticipants until it times out or speaks", function()
      local alice = C.session(sim, "alice@contoso.com", fmt)
      local aconv = joined(alice)
      local bob = C.session(sim, "bob@contoso.com", fmt)
      local bconv = joined(bob)
      local messaging = bob:get(bconv.links.messaging.href)
      local set = messaging.links.setIsTyping.href
      assert.matches("/messaging/setIsTyping$", set)
      assert.matches("/participants/typingParticipants$", messaging.links.typingParticipants.href)
      local bob_href = aconv.href .. "/participants/bob@contoso.com"

      assert.equal(204, (bob:request("POST", set)))
      local added = wait_participant(alice, "added", "typingParticipants", bob_href)
      assert.equal("conversation", added.sender)
      assert.is_nil(added.resource)
      assert.is_true(member("bob@contoso.com").typing)
      local typing = alice:get(alice:get(aconv.links.messaging.href).links.typingParticipants.href)
      assert.equal("typingParticipants", typing.rel)
      local l = typing.links.participant
      if l[1] then l = l[1] end -- JSON: a list of one
      assert.equal(bob_href, l.href)
      assert.equal("Bob Brown", l.title)
      -- typing again only restarts the timer; a few seconds later it stops
      assert.equal(204, (bob:request("POST", set)))
      local _, seen = wait_participant(alice, "deleted", "typingParticipants", bob_href)
      for _, e in ipairs(seen) do
        assert.is_false(e.type == "added" and e.in_ and e.in_.rel == "typingParticipants", "typing added twice")
      end
      assert.is_false(member("bob@contoso.com").typing)

      -- a message ends typing at once, before the message arrives
      assert.equal(204, (bob:request("POST", set)))
      wait_participant(alice, "added", "typingParticipants", bob_href)
      assert.equal(201, (bob:request("POST", messaging.links.sendMessage.href, "done typing", "text/plain")))
      local stop, seen2 = wait_participant(alice, "deleted", "typingParticipants", bob_href)
      assert.is_truthy(stop)
      for _, e in ipairs(seen2) do assert.is_false(e.link.rel == "message", "message before typing stopped") end
      alice:wait_event(C.is("completed", "message"))
      -- the typer hears nothing of its own typing
      local _, own = bob:wait_event(C.is("completed", "message"))
      for _, e in ipairs(own) do
        assert.is_false(e.in_ ~= nil and e.in_.rel == "typingParticipants", "bob saw his own typing")
      end
    end)

    it("lets a virtual participant type through the control API", function()
      local alice = C.session(sim, "alice@contoso.com", fmt)
      local aconv = joined(alice)
      sim:control("POST", "/_sim/meetings/DEMO1/join", { user = "carol@contoso.com", name = "Carol", lobby = false })
      local st, r = sim:control("POST", "/_sim/meetings/DEMO1/typing", { from = "carol@contoso.com" })
      assert.equal(200, st)
      assert.same({ key = "carol@contoso.com", typing = true }, r)
      local carol = aconv.href .. "/participants/carol@contoso.com"
      wait_participant(alice, "added", "typingParticipants", carol)
      assert.equal(200, (sim:control("POST", "/_sim/meetings/DEMO1/typing", { from = "carol@contoso.com",
                                                                              typing = false })))
      wait_participant(alice, "deleted", "typingParticipants", carol)
      assert.equal(409, (sim:control("POST", "/_sim/meetings/DEMO1/typing", { from = "nobody@contoso.com" })))
    end)

    it("gives leaders eject, promote and demote links that work", function()
      local alice = C.session(sim, "alice@contoso.com", fmt)
      local aconv = joined(alice)
      local bob = C.session(sim, "bob@contoso.com", fmt)
      local bconv = joined(bob)
      local bob_href = aconv.href .. "/participants/bob@contoso.com"
      wait_participant(alice, "added", "attendees", bob_href)
      local p = alice:get(bob_href)
      assert.is_string(p.links.eject.href)
      assert.is_string(p.links.promote.href)
      assert.is_nil(p.links.demote)
      -- an attendee has none of these, and the server refuses
      local a_for_bob = bob:get(bconv.href .. "/participants/alice@contoso.com")
      assert.is_nil(a_for_bob.links.eject)
      assert.is_nil(a_for_bob.links.demote)
      assert.equal(403, (bob:request("POST", bconv.href .. "/participants/alice@contoso.com/eject")))
      -- nor on oneself
      assert.equal(409, (alice:request("POST", aconv.href .. "/participants/alice@contoso.com/demote")))

      assert.equal(204, (alice:request("POST", p.links.promote.href)))
      local up = wait_participant(alice, "updated", "leaders", bob_href)
      assert.equal("Leader", up.resource.props.role)
      assert.is_string(up.resource.links.demote.href)
      assert.is_nil(up.resource.links.promote)
      local self_up = wait_participant(bob, "updated", "leaders")
      assert.equal("Leader", self_up.resource.props.role)
      assert.equal("Leader", member("bob@contoso.com").role)
      assert.equal(409, (alice:request("POST", p.links.promote.href)))

      assert.equal(204, (alice:request("POST", up.resource.links.demote.href)))
      local down = wait_participant(alice, "updated", "attendees", bob_href)
      assert.equal("Attendee", down.resource.props.role)
      assert.is_string(down.resource.links.promote.href)

      assert.equal(204, (alice:request("POST", down.resource.links.eject.href)))
      local gone = wait_participant(alice, "deleted", "attendees", bob_href)
      assert.is_truthy(gone)
      local ended = bob:wait_event(C.is("deleted", "conversation"))
      assert.equal("RemoteFailure", ended.reason.code)
      assert.equal("Removed", ended.reason.subcode)
      assert.is_nil(member("bob@contoso.com"))
      assert.equal(404, (alice:request("POST", down.resource.links.eject.href)))

      -- a virtual participant
      sim:control("POST", "/_sim/meetings/DEMO1/join", { user = "carol@contoso.com", name = "Carol", lobby = false })
      local carol = aconv.href .. "/participants/carol@contoso.com"
      wait_participant(alice, "added", "attendees", carol)
      assert.equal(204, (alice:request("POST", carol .. "/eject")))
      wait_participant(alice, "deleted", "attendees", carol)
      assert.is_nil(member("carol@contoso.com"))
    end)
  end)
end)
