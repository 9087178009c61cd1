-- ucwa-sim: presence, people and presence subscriptions, over raw HTTP, in
-- JSON and XML: presence that changes when a user signs in, sets it or goes
-- idle; contactPresence events to subscribers; subscriptions that expire,
-- extend and end; search limits; photos; the control routes.
local C = require "support.sim_client"
local cjson = require "cjson"

-- makeMeAvailable; the channel's medium events (presence) come without aggregation.
local function available(s)
  assert(s:pget("timeout=0.1&medium=0&low=0"))
  local st = s:post(s.app.embedded.me.links.makeMeAvailable.href, { signInAs = "Online" })
  assert.equal(204, st)
  local app = s:get(s.app.href)
  s.app = app
  return app.embedded.me
end

-- An embedded collection as a list (XML alone does not tell one member from a collection of one).
local function list(x)
  if x == nil then return {} end
  if x.rel or x.href or x.props then return { x } end
  return x
end

-- A request body with a list in it (C.xml_input writes properties only).
local function input(s, t)
  if s.fmt == "json" then return cjson.encode(t) end
  local parts = { '<?xml version="1.0" encoding="utf-8"?>'
    .. '<input xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa">' }
  for k, v in pairs(t) do
    if type(v) == "table" then
      parts[#parts + 1] = '<propertyList name="' .. k .. '">'
      for _, item in ipairs(v) do parts[#parts + 1] = "<item>" .. item .. "</item>" end
      parts[#parts + 1] = "</propertyList>"
    else
      parts[#parts + 1] = '<property name="' .. k .. '">' .. tostring(v) .. "</property>"
    end
  end
  return table.concat(parts) .. "</input>"
end

local function people_href(s, rel)
  return s.app.embedded.people.links[rel].href
end

local function presence_of(s, user)
  local m = assert(s:get(s.app.href .. "/people/" .. user .. "/presence"))
  return m.props.availability
end

local function subscribe(s, body)
  local st, h, b = s:post(people_href(s, "presenceSubscriptions"), input(s, body))
  assert.equal(201, st, b)
  return C.model(b, s.fmt), h
end

local function presence_events(seen, user)
  local n = 0
  for _, e in ipairs(seen) do
    if e.link.rel == "contactPresence" and e.in_ and e.in_.href:find(user, 1, true) then n = n + 1 end
  end
  return n
end

describe("ucwa-sim presence and people", function()
  local sim
  C.use_sim_each(function(s) sim = s end, { min_aggregation = 0 })

  C.each_format(function(fmt)
    it("a user is Offline until signed in, then what it sets; me/presence is a POST", function()
      local bob = C.session(sim, "bob@contoso.com", fmt)
      assert.equal("Offline", presence_of(bob, "alice@contoso.com"))
      local alice = C.session(sim, "alice@contoso.com", fmt)
      local me = available(alice)
      assert.equal("Online", presence_of(bob, "alice@contoso.com"))
      local st = alice:post(me.links.presence.href, { availability = "Busy" })
      assert.equal(204, st)
      assert.equal("Busy", presence_of(bob, "alice@contoso.com"))
      assert.equal("Busy", assert(alice:get(me.links.presence.href)).props.availability)
      -- a value PreferredAvailability does not have: 400, nothing changes
      local bad, _, body = alice:post(me.links.presence.href, { availability = "Sleeping" })
      assert.equal(400, bad)
      assert.equal("ParameterValidationFailure", C.error_model(body, fmt).subcode)
      assert.equal("Busy", presence_of(bob, "alice@contoso.com"))
      -- location: 60 characters at most (location_ref.md)
      assert.equal(400, (alice:post(me.links.location.href, { location = ("x"):rep(61) })))
      assert.equal(204, (alice:post(me.links.location.href, { location = "Lab" })))
      assert.equal("Lab", assert(alice:get(me.links.location.href)).props.location)
      assert.equal(204, (alice:post(me.links.note.href, { message = "Heads down" })))
      assert.equal("Heads down", assert(bob:get(bob.app.href .. "/people/alice@contoso.com/note")).props.message)
    end)

    it("goes idle without requests and comes back with the next one", function()
      assert.equal(200, (sim:control("POST", "/_sim/people", { idle = 0.3 })))
      local alice = C.session(sim, "alice@contoso.com", fmt)
      available(alice)
      local bob = C.session(sim, "bob@contoso.com", fmt)
      assert.is_true(C.eventually(function()
        local _, st = sim:control("GET", "/_sim/users/alice@contoso.com/presence")
        return st.availability == "IdleOnline"
      end, 3))
      assert.is_not_nil(alice:get(alice.app.href)) -- alice is back at work
      assert.equal("Online", presence_of(bob, "alice@contoso.com"))
    end)

    it("sends contactPresence to subscribers once per change, and not after the subscription ends", function()
      local bot = C.session(sim, "bot@contoso.com", fmt)
      available(bot)
      local sub = subscribe(bot, { duration = 10, uris = { "sip:alice@contoso.com" } })
      assert.is_string(sub.props.id)
      assert.is_not_nil(sub.links.memberships)
      sim:control("POST", "/_sim/users/alice@contoso.com/presence", { availability = "Away" })
      sim:control("POST", "/_sim/users/alice@contoso.com/presence", { availability = "Away" }) -- no change
      local ev, seen = bot:wait_event(C.is("updated", "contactPresence", { ["in"] = "contact" }))
      assert.equal("people", ev.sender)
      assert.equal("Away", presence_of(bot, "alice@contoso.com"))
      -- nothing more came for the repeated value
      local later = bot.backlog
      for _ = 1, 2 do
        for _, e in ipairs(C.flat(assert(bot:pget("timeout=0.3")))) do later[#later + 1] = e end
      end
      assert.equal(1, presence_events(seen, "alice") + presence_events(later, "alice"))
      bot.backlog = {}
      -- the members, then the subscription, deleted
      local ms = assert(bot:get(sub.links.memberships.href))
      local members = list(ms.embedded.presenceSubscriptionMembership)
      assert.equal(1, #members)
      assert.matches("alice@contoso.com$", members[1].links.contact.href)
      assert.equal(204, (bot:request("DELETE", sub.href)))
      assert.equal(404, select(2, bot:get(sub.href)))
      sim:control("POST", "/_sim/users/alice@contoso.com/presence", { availability = "Online" })
      local ok = pcall(bot.wait_event, bot, C.is("updated", "contactPresence"), 0.6)
      assert.is_false(ok, "a deleted subscription still sent contactPresence")
    end)

    it("expires after its duration, warned a minute before; extending adds to what remains", function()
      assert.equal(200, (sim:control("POST", "/_sim/people", { minute = 0.1 })))
      local bot = C.session(sim, "bot@contoso.com", fmt)
      available(bot)
      local sub = subscribe(bot, { duration = 10, uris = { "sip:bob@contoso.com" } })
      local bad = bot:request("POST", sub.href .. "?duration=31")
      assert.equal(400, bad)
      assert.equal(204, (bot:request("POST", sub.href .. "?duration=10")))
      local _, state = sim:control("GET", "/_sim/people")
      local s = state.subscriptions[1]
      assert.equal(1, #s.extensions)
      assert.is_true(s.remaining > 19 and s.remaining <= 20, tostring(s.remaining))
      bot:wait_event(C.is("updated", "presenceSubscription"), 5)
      bot:wait_event(C.is("deleted", "presenceSubscription"), 3)
      assert.equal(404, select(2, bot:get(sub.href)))
      _, state = sim:control("GET", "/_sim/people")
      assert.equal(1, state.ended.expired)
      assert.same({}, state.subscriptions)
    end)

    it("subscribes to a group of the contact list", function()
      local bot = C.session(sim, "bot@contoso.com", fmt)
      available(bot)
      local groups = assert(bot:get(people_href(bot, "myGroups")))
      local g = list(groups.embedded.group)[1]
      assert.equal("Team", g.props.name)
      local st, _, b = bot:post(g.links.subscribeToGroupPresence.href .. "&duration=10", "")
      assert.equal(201, st, b)
      local sub = C.model(b, fmt)
      local members = list(assert(bot:get(sub.links.memberships.href)).embedded.presenceSubscriptionMembership)
      assert.equal(2, #members)
    end)

    it("checks search's query and limit, and serves photos as images", function()
      local bot = C.session(sim, "bot@contoso.com", fmt)
      local search = people_href(bot, "search")
      assert.equal(400, select(2, bot:get(search .. "?query=" .. ("a"):rep(257))))
      assert.equal(400, select(2, bot:get(search .. "?query=alice&limit=101")))
      assert.equal(400, select(2, bot:get(search .. "?query=alice&limit=0")))
      local r = assert(bot:get(search .. "?query=o&limit=1"))
      assert.equal(1, #list(r.embedded.contact))
      assert.is_true(r.props.moreResultsAvailable == true or r.props.moreResultsAvailable == "True")
      local c = list(r.embedded.contact)[1]
      local st, h, body = bot:request("GET", c.links.contactPhoto.href)
      assert.equal(200, st)
      assert.matches("^image/bmp", h["content-type"])
      assert.equal("BM", body:sub(1, 2))
      assert.equal(#body, string.unpack("<I4", body, 3))
    end)
  end)

  it("control routes drive another user's presence, note and location, and refuse bad values", function()
    local st, p = sim:control("POST", "/_sim/users/alice@contoso.com/presence", { availability = "DoNotDisturb" })
    assert.equal(200, st)
    assert.equal("DoNotDisturb", p.availability)
    assert.equal(400, (sim:control("POST", "/_sim/users/alice@contoso.com/presence", { availability = "Asleep" })))
    assert.equal(404, (sim:control("POST", "/_sim/users/nobody@contoso.com/presence", { availability = "Busy" })))
    st, p = sim:control("POST", "/_sim/users/alice@contoso.com/note", { message = "Out today" })
    assert.equal(200, st)
    assert.equal("Out today", p.note)
    assert.equal(400, (sim:control("POST", "/_sim/users/alice@contoso.com/location", { location = ("y"):rep(61) })))
    p = select(2, sim:control("POST", "/_sim/users/alice@contoso.com/presence", { availability = "Offline" }))
    assert.equal("Offline", p.availability)
    assert.equal(400, (sim:control("POST", "/_sim/people", { minute = -1 })))
    local code, _, text = C.request("GET", sim.base .. "/_sim/people")
    assert.equal(200, code)
    assert.matches('"subscriptions":%[%]', text)
    assert.equal(60, cjson.decode(text).settings.minute)
  end)
end)
