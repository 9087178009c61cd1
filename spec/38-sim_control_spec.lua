-- ucwa-sim: the control API's own contract (JSON shapes, defaults).
local C = require "support.sim_client"
local cjson = require "cjson"

local DEMO1 = "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:DEMO1"

-- A control request answered with its raw JSON text, for shapes cjson's
-- decoding cannot show ({} and [] decode alike).
local function raw(sim, method, path, body)
  local st, _, text = C.request(method, sim.base .. path, { ["Content-Type"] = "application/json" },
    body and cjson.encode(body) or nil)
  return st, text
end

local function unescape(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- Regression: empty lists were written as {} (lua-cjson 2.1 has no empty array).
describe("ucwa-sim control API lists", function()
  it("writes empty lists as JSON arrays, like the non-empty ones", function()
    local dir = os.tmpname()
    finally(function() os.remove(dir) end)
    local f = assert(io.open(dir, "w"))
    f:write(cjson.encode({ users = { { username = "bob@contoso.com" } } }))
    f:close()
    local sim = C.start({ directory = dir })
    finally(function() C.stop(sim) end)

    local st, text = raw(sim, "GET", "/_sim/state")
    assert.equal(200, st)
    assert.matches('"applications":%[%]', text)
    assert.matches('"meetings":%[%]', text)

    st, text = raw(sim, "POST", "/_sim/meetings", { id = "EMPTY", organizer = "bob@contoso.com" })
    assert.equal(201, st)
    assert.matches('"members":%[%]', text)
    assert.matches('"admitted":%[%]', select(2, raw(sim, "POST", "/_sim/meetings/EMPTY/admit", {})))
    assert.matches('"rejected":%[%]', select(2, raw(sim, "POST", "/_sim/meetings/EMPTY/reject", {})))

    assert.equal(200, (raw(sim, "POST", "/_sim/meetings/EMPTY/join", { user = "carol@contoso.com", lobby = false })))
    st, text = raw(sim, "GET", "/_sim/state")
    assert.equal(200, st)
    assert.matches('"members":%[{', text)
    assert.matches('"meetings":%[{', text)
    assert.matches('"members":%[%]', select(2, raw(sim, "POST", "/_sim/meetings/EMPTY/end", {})))
  end)
end)

-- Regression: without `from`, /message and /typing chose the organiser even
-- when the organiser was not in the meeting, and answered 409.
describe("ucwa-sim control API default speaker", function()
  local sim
  C.use_sim_each(function(s) sim = s end, { auto_admit = true })

  local function bob_in_demo1()
    local bob = C.session(sim, "bob@contoso.com")
    assert.equal(201, (bob:post(bob.app.embedded.communication.links.joinOnlineMeeting.href,
      { onlineMeetingUri = DEMO1 })))
    bob:wait_event(C.is("completed", "onlineMeetingInvitation"))
    return bob
  end

  it("has the organiser say a message without `from`, joining the meeting first", function()
    local bob = bob_in_demo1()
    local st, r = sim:control("POST", "/_sim/meetings/DEMO1/message", { text = "hi" })
    assert.equal(200, st, cjson.encode(r))
    local joined = bob:wait_event(function(e)
      return C.is("added", "participant")(e) and e.link.title == "Alice Adams"
    end)
    assert.equal("leaders", joined.in_.rel) -- the organiser leads
    local msg = bob:wait_event(C.is("completed", "message")).resource
    assert.equal("Incoming", msg.props.direction)
    assert.equal("Alice Adams", msg.links.participant.title)
    assert.equal("hi", unescape(msg.links.plainMessage.href:match(",(.*)$")))
    local _, m = sim:control("GET", "/_sim/meetings/DEMO1")
    local alice
    for _, x in ipairs(m.members) do
      if x.key == "alice@contoso.com" then alice = x end
    end
    assert.is_truthy(alice)
    assert.equal("in", alice.state)
    assert.is_true(alice.virtual)
  end)

  it("has the organiser type without `from`", function()
    local bob = bob_in_demo1()
    local st, r = sim:control("POST", "/_sim/meetings/DEMO1/typing", {})
    assert.equal(200, st, cjson.encode(r))
    assert.equal("alice@contoso.com", r.key)
    bob:wait_event(C.is("added", "participant", { ["in"] = "typingParticipants" }))
  end)

  it("still answers 409 for a named sender who is not in the meeting", function()
    bob_in_demo1()
    assert.equal(409, (sim:control("POST", "/_sim/meetings/DEMO1/message",
      { from = "nobody@contoso.com", text = "hi" })))
  end)

  it("answers 409 when the meeting has ended", function()
    sim:control("POST", "/_sim/meetings/DEMO1/end")
    assert.equal(409, (sim:control("POST", "/_sim/meetings/DEMO1/message", { text = "hi" })))
  end)
end)
