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
