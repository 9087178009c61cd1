-- Dispatch of event batches to objects, without a server: incoming
-- invitations of every kind, operation events in order and once, events that
-- come before their operation is known.
local ucwa = require "ucwa"
local cjson = require "cjson"

local APP = "/ucwa/oauth/v1/applications/7"

-- A client that never signed in, and its session's registry (white box: the
-- registry is ucwa.dispatch, fed here the batches the event channel would).
local function new_client()
  local c = ucwa.client{ url = "http://127.0.0.1:9/root", username = "bot@contoso.com", password = "x" }
  local session = c._session
  session.base = "http://127.0.0.1:9" .. APP
  return c, session.registry, session
end

local function batch(events)
  return assert(ucwa.parse_events(cjson.encode{
    _links = { self = { href = APP .. "/events?ack=1" }, next = { href = APP .. "/events?ack=2" } },
    sender = { { rel = "communication", href = APP .. "/communication", events = events } },
  }, "application/json"))
end

local function event(kind, rel, href, resource, extra)
  local ev = { type = kind, link = { rel = rel, href = href } }
  if resource then ev._embedded = { [rel] = resource } end
  for k, v in pairs(extra or {}) do ev[k] = v end
  return ev
end

describe("dispatch", function()
  for _, rel in ipairs{ "onlineMeetingInvitation", "messagingInvitation", "participantInvitation" } do
    it("hands an incoming " .. rel .. " to the invitation callbacks as an object of its kind", function()
      local c, registry = new_client()
      local href = APP .. "/communication/invitations/42"
      local res = { rel = rel, direction = "Incoming", state = "Connecting", subject = "Hi",
                    _links = { self = { href = href }, accept = { href = href .. "/accept" },
                               decline = { href = href .. "/decline" } } }
      local got, seen = {}, {}
      c:on("invitation", function(inv)
        got[#got + 1] = inv
        inv:on("completed", function(i) seen[#seen + 1] = "completed:" .. i.status end)
        inv:on("updated", function() seen[#seen + 1] = "updated" end)
      end)
      registry:dispatch(batch{ event("started", rel, href, res) })
      assert.equal(1, #got)
      local inv = got[1]
      assert.equal(rel, inv.rel)
      assert.equal("Incoming", inv.direction)
      assert.equal("Hi", inv.subject)
      assert.is_function(inv.accept)
      assert.is_function(inv.decline)
      res.state = "Connected"
      registry:dispatch(batch{ event("updated", rel, href, res),
                         event("completed", rel, href, res, { status = "Failure",
                           reason = { code = "LocalFailure", subcode = "SomethingNew", message = "m" } }),
                         event("completed", rel, href, res, { status = "Success" }) })
      assert.same({ "updated", "completed:Failure" }, seen)
      assert.equal("SomethingNew", inv.reason.subcode) -- unknown subcodes are kept
      assert.equal("Connected", inv.state)
      assert.equal(1, #got)
      c:close()
    end)
  end

  it("keeps events of an operation not yet known and replays them when it is", function()
    local c, registry, session = new_client()
    local href = APP .. "/communication/onlineMeetingInvitations/9"
    registry:dispatch(batch{ event("started", "onlineMeetingInvitation", href) })
    local resource = require "ucwa.resource"
    local inv = resource.new(session, { rel = "onlineMeetingInvitation", href = href, properties = {} })
    local seen = {}
    inv:on("started", function() seen[#seen + 1] = "started" end)
    registry:track(inv)
    registry:register(inv)
    assert.same({ "started" }, seen)
    c:close()
  end)

  it("reports a handler error to the error callbacks and keeps dispatching", function()
    local c, registry = new_client()
    local errs, n = {}, 0
    c:on("error", function(e) errs[#errs + 1] = e end)
    c:on("event", function() n = n + 1; error("bot bug") end)
    registry:dispatch(batch{ event("updated", "me", APP .. "/me"), event("updated", "me", APP .. "/me") })
    assert.equal(2, n)
    assert.equal(2, #errs)
    assert.equal("CallbackError", errs[1].code)
    assert.matches("bot bug", errs[1].message)
    c:close()
  end)

  it("raises handler errors from step() when nobody listens for errors, one per step, none lost", function()
    local c, registry = new_client()
    local n = 0
    c:on("event", function() n = n + 1; error("unheard bot bug " .. n) end)
    registry:dispatch(batch{ event("updated", "me", APP .. "/me"), event("updated", "me", APP .. "/me") })
    local ok1, e1 = pcall(c.step, c, 0)
    local ok2, e2 = pcall(c.step, c, 0)
    local ok3 = pcall(c.step, c, 0)
    assert.is_false(ok1)
    assert.matches("unheard bot bug 1", tostring(e1))
    assert.is_false(ok2)
    assert.matches("unheard bot bug 2", tostring(e2))
    assert.is_true(ok3)
    c:close()
  end)

  -- regression: a resync used to fail operations in flight although no event is lost
  it("keeps operations in flight across a resync, fails them on a resume", function()
    local c, registry, session = new_client()
    local resource = require "ucwa.resource"
    local resumed = {}
    c:on("resumed", function(info) resumed[#resumed + 1] = info.reason end)
    local inv = resource.new(session, { rel = "onlineMeetingInvitation", href = APP .. "/inv/1", properties = {} })
    registry:track(inv)
    registry:register(inv)
    local function with_link(rel)
      return assert(ucwa.parse_events(cjson.encode{ _links = { [rel] = { href = APP .. "/events?ack=3" } } },
        "application/json"))
    end
    registry:dispatch(with_link("resync"))
    assert.is_false(inv:completed())
    registry:dispatch(with_link("resume"))
    assert.equal("Failure", inv.status)
    assert.equal("EventChannelResumed", inv.reason.subcode)
    assert.same({ "resync", "resume" }, resumed)
    c:close()
  end)
end)

describe("links that are not URLs", function()
  it("fail the request with BadLink instead of raising", function()
    local c, _, session = new_client()
    local res = require("ucwa.resource").new(session, { rel = "participant", href = APP .. "/p/1",
      links = { admit = { href = "//[bad" } } })
    local got
    res:admit(function(ok, err) got = { ok, err } end)
    assert.is_nil(got[1])
    assert.equal("BadLink", got[2].subcode)
    c:close()
  end)
end)

describe("events about operations the bot never started", function()
  -- regression: 200,000 such events left 200,000 entries in the early-events table
  it("are kept within a bound and an age, and what goes over is dropped", function()
    local dispatch = require "ucwa.dispatch"
    local c, registry = new_client()
    for i = 1, 20000 do
      local href = APP .. "/communication/onlineMeetingInvitations/" .. (i % 5000)
      registry:dispatch(batch{ event("updated", "onlineMeetingInvitation", href) })
    end
    local ops, events = registry:early_count()
    assert.is_true(ops <= dispatch.EARLY_MAX, ops .. " operations kept")
    assert.is_true(events <= dispatch.EARLY_MAX * dispatch.EARLY_EVENTS, events .. " events kept")
    -- an operation that is claimed in time still gets its events
    local href = APP .. "/communication/onlineMeetingInvitations/late"
    registry:dispatch(batch{ event("started", "onlineMeetingInvitation", href) })
    local inv = require("ucwa.resource").new(c._session, { rel = "onlineMeetingInvitation", href = href })
    local started = 0
    inv:on("started", function() started = started + 1 end)
    registry:register(inv)
    assert.equal(1, started)
    c:close()
  end)
end)

describe("events from conversations the bot never joined", function()
  -- regression: 10,000 distinct conversation senders triggered 10,000 GETs
  -- and kept 10,200 objects alive for good
  it("fetch within a budget, keep a bounded number alive, report it once, and let the rest go", function()
    local dispatch = require "ucwa.dispatch"
    local c, registry, session = new_client()
    local errs = {}
    c:on("error", function(e) errs[#errs + 1] = e end)
    local gets = 0
    session.send = function(_, spec, done) -- white box: count the requests, answer none
      if spec.method == "GET" then gets = gets + 1 end
      local _ = done
    end
    local N = 3000
    for i = 1, N do
      local href = APP .. "/communication/conversations/" .. i
      registry:dispatch(assert(ucwa.parse_events(cjson.encode{
        _links = { self = { href = APP .. "/events?ack=1" }, next = { href = APP .. "/events?ack=2" } },
        sender = { { rel = "conversation", href = href, events = {
          { type = "added", link = { rel = "participant", href = href .. "/participants/x" } } } } },
      }, "application/json")))
    end
    assert.equal(dispatch.FETCH_MAX, gets)
    assert.is_true(#registry:conversations() <= dispatch.LIVE_MAX)
    assert.equal(1, #errs)
    assert.equal("TooManyConversations", errs[1].subcode)
    collectgarbage()
    collectgarbage()
    local known = 0
    for _ in pairs(registry.objects) do known = known + 1 end
    -- the kept conversations and their participants; the rest was collected
    assert.is_true(known <= 2 * dispatch.LIVE_MAX, known .. " objects still held")
    c:close()
  end)
end)
