-- ucwa-sim: every resource the simulator serves uses only the property names,
-- link rels and embedded rels of the reference sample for that resource, in
-- both formats; JSON and XML of the same resource agree.
local C = require "support.sim_client"
local helpers = require "helpers"

local DEMO1 = "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:DEMO1"

-- Names the simulator adds beyond a page's sample (documented elsewhere in the reference).
local EXTRA = {
  me = { links = { makeMeAvailable = true, reportMyActivity = true } }, -- application_ref / CreateAnApplication
  communication = { props = { etag = true }, links = { joinOnlineMeeting = true, startOnlineMeeting = true } },
  conversations = { links = { conversation = true } },
  people = { links = { myGroups = true, myContacts = true, search = true, presenceSubscriptions = true,
    subscribedContacts = true } },
  message = { props = { operationId = true } },
}

local function reference(rel, fmt)
  local path = helpers.fixtures .. "/samples/" .. rel .. "_ref.get-" .. fmt .. "-response.1." .. fmt
  return C.model(helpers.read(path), fmt)
end

local function is_guid(name)
  return name:match("^%x+%-%x+%-%x+%-%x+%-%x+$") ~= nil
end

local function check(res, fmt, rel)
  local ref = reference(rel or res.rel, fmt)
  local extra = EXTRA[res.rel] or {}
  assert.equal(ref.rel, res.rel)
  assert.is_string(res.href)
  for name in pairs(res.props) do
    assert.is_true(ref.props[name] ~= nil or is_guid(name) or (extra.props or {})[name] ~= nil,
      res.rel .. ": property " .. name .. " is not in the reference (" .. fmt .. ")")
  end
  for name in pairs(res.links) do
    assert.is_true(ref.links[name] ~= nil or (extra.links or {})[name] ~= nil,
      res.rel .. ": link " .. name .. " is not in the reference (" .. fmt .. ")")
  end
  for name in pairs(res.embedded) do
    assert.is_true(ref.embedded[name] ~= nil, res.rel .. ": embedded " .. name .. " is not in the reference")
  end
end

local function normalize(v)
  if v == true then return "True" elseif v == false then return "False" end
  if type(v) == "number" then return tostring(math.tointeger(v) or v) end
  if type(v) == "string" then
    local ms = v:match("^/Date%((%d+)%)/$")
    if ms then return "date" end
    if v:match("^%d%d%d%d%-%d%d%-%d%dT") then return "date" end
  end
  return v
end

local function same_model(j, x)
  assert.equal(j.rel, x.rel)
  assert.equal(j.href, x.href)
  for name, v in pairs(j.props) do
    if type(v) == "table" then
      assert.same(v, x.props[name])
    else
      assert.equal(normalize(v), normalize(x.props[name]), j.rel .. "." .. name)
    end
  end
  for name in pairs(x.props) do assert.is_not_nil(j.props[name]) end
  for name in pairs(j.links) do assert.is_not_nil(x.links[name], j.rel .. " link " .. name) end
  for name in pairs(x.links) do assert.is_not_nil(j.links[name], j.rel .. " link " .. name) end
end

describe("ucwa-sim resource shapes", function()
  it("match the reference samples, and JSON matches XML", function()
    local sim = C.start({ auto_admit = false })
    finally(function() C.stop(sim) end)
    local alice = C.session(sim, "alice@contoso.com", "json")
    assert.equal(204, (alice:post(alice.app.embedded.me.links.makeMeAvailable.href, {})))
    alice:post(alice.app.embedded.communication.links.joinOnlineMeeting.href, { onlineMeetingUri = DEMO1 })
    local a_done = alice:wait_event(C.is("completed", "onlineMeetingInvitation"))
    local bob = C.session(sim, "bob@contoso.com", "json")
    bob:post(bob.app.embedded.communication.links.joinOnlineMeeting.href, { onlineMeetingUri = DEMO1 })
    alice:wait_event(C.is("added", "participant", { ["in"] = "lobby" }))
    local a_conv_href = a_done.resource.links.conversation.href
    local a_conv = alice:get(a_conv_href)
    sim:control("POST", "/_sim/meetings/DEMO1/message", { from = "bob@contoso.com", text = "x" })

    local hrefs = {
      { alice.app.embedded.me.href }, { alice.app.embedded.communication.href }, { alice.app.embedded.people.href },
      { a_conv_href }, { a_conv.links.messaging.href }, { a_conv.links.lobby.href }, { a_conv.links.leaders.href },
      { a_conv.links.attendees.href }, { a_conv.links.localParticipant.href, "participant" },
      { a_conv.links.onlineMeeting.href }, { alice.app.embedded.me.href .. "/presence" },
      { a_done.link.href }, { alice.app.embedded.communication.links.conversations.href },
    }
    -- a lobby participant seen by the organizer: admit/reject links
    local lobby = alice:get(a_conv.links.lobby.href)
    hrefs[#hrefs + 1] = { lobby.embedded.participant[1].href, "participant" }
    sim:control("POST", "/_sim/meetings/DEMO1/admit", {})
    bob:wait_event(C.is("completed", "onlineMeetingInvitation"))
    local conv = bob:get(bob.app.href .. "/communication/conversations?filter=active")
    local bconv = bob:get(conv.links.conversation[1].href)
    bob:request("POST", bob:get(bconv.links.messaging.href).links.sendMessage.href, "hello", "text/plain")
    local msg = alice:wait_event(C.is("completed", "message"))
    hrefs[#hrefs + 1] = { msg.link.href }

    for _, h in ipairs(hrefs) do
      local st1, _, jb = C.request("GET", sim.base .. h[1], { Accept = "application/json",
        Authorization = "Bearer " .. alice.token })
      assert.equal(200, st1, h[1])
      local st2, _, xb = C.request("GET", sim.base .. h[1], { Accept = "application/xml",
        Authorization = "Bearer " .. alice.token })
      assert.equal(200, st2, h[1])
      local j, x = C.model(jb, "json"), C.model(xb, "xml")
      check(j, "json", h[2])
      check(x, "xml", h[2])
      same_model(j, x)
    end
  end)
end)
