-- What real servers do that the reference pages under-state, handled by the
-- client: the resource-version header, invitations updated without their
-- action links, the first message of a messagingInvitation, message senders
-- that are contacts, every documented decline reason, one message POST at a
-- time per conversation.
local ucwa = require "ucwa"
local cjson = require "cjson"
local peer_util = require "support.peer_util"

local APP = "/ucwa/oauth/v1/applications/7"

local function new_client(url)
  local c = ucwa.client{ url = url or "http://127.0.0.1:9/root", username = "bot@contoso.com", password = "x" }
  local session = c._session -- white box: feed the registry, send through the session
  session.base = (url or "http://127.0.0.1:9") .. APP
  return c, session
end

local function dispatch(session, rel, kind, href, res)
  local ev = { type = kind, link = { rel = rel, href = href } }
  if res then ev._embedded = { [rel] = res } end
  session.registry:dispatch(assert(ucwa.parse_events(cjson.encode{
    _links = { self = { href = APP .. "/events?ack=1" }, next = { href = APP .. "/events?ack=2" } },
    sender = { { rel = "communication", href = APP .. "/communication", events = { ev } } },
  }, "application/json")))
end

describe("requests", function()
  local peer = peer_util.use_peer()
  -- regression: X-MS-RequiresMinResourceVersion (Versioning.md) was never sent
  it("ask for resource version 2 on every UCWA request", function()
    local c, session = new_client(peer.base)
    local got
    session:send({ method = "GET", url = peer.base .. "/echo", raw = true }, function(_, err, resp)
      got = { err, resp }
    end)
    local t = os.time() + 5
    while not got and os.time() <= t do c.engine:step(0.05) end
    assert.is_nil(got[1])
    local echo = cjson.decode(got[2].body)
    local h = {}
    for k, v in pairs(echo.headers) do h[k:lower()] = v end
    assert.equal("2", h["x-ms-requiresminresourceversion"])
    c:close()
  end)

  -- regression: 404 APIVersionNotSupported was not explained
  it("explain 404 APIVersionNotSupported", function()
    local c, session = new_client(peer.base)
    local real = session.engine
    session.engine = { request = function(_, r) -- white box: the server's answer, as a real pool gives it
      r.callback{ status = 404, headers = { ["content-type"] = "application/json" },
                  body = cjson.encode{ code = "NotFound", subcode = "APIVersionNotSupported" } }
    end }
    local got
    session:send({ method = "GET", url = APP .. "/people" }, function(_, err) got = err end)
    session.engine = real
    assert.equal("APIVersionNotSupported", got.subcode)
    assert.matches("cannot honour resource version 2", got.message)
    assert.matches("older than Skype for Business Server 2015", tostring(got))
    c:close()
  end)
end)

describe("incoming invitations", function()
  local HREF = APP .. "/communication/messagingInvitations/3"
  local function res(state, links)
    local l = { self = { href = HREF } }
    for k, v in pairs(links) do l[k] = { href = v } end
    return { rel = "messagingInvitation", direction = "Incoming", state = state, _links = l }
  end

  -- regression: an updated invitation without action links dropped accept
  it("keep their action links while still Connecting, drop them once Connected", function()
    local c, session = new_client()
    local inv
    c:on("invitation", function(i) inv = i end)
    dispatch(session, "messagingInvitation", "started", HREF,
      res("Connecting", { accept = HREF .. "/accept", decline = HREF .. "/decline" }))
    assert.equal(HREF .. "/accept", inv:link("accept"))
    dispatch(session, "messagingInvitation", "updated", HREF, res("Connecting", {}))
    assert.equal(HREF .. "/accept", inv:link("accept"))
    assert.equal(HREF .. "/decline", inv:link("decline"))
    dispatch(session, "messagingInvitation", "updated", HREF, res("Connected", {}))
    assert.is_nil(inv:link("accept"))
    c:close()
  end)

  -- regression: the first message carried in a messagingInvitation was not decoded
  it("decode the first message of a messagingInvitation into inv.message", function()
    local c, session = new_client()
    local inv
    c:on("invitation", function(i) inv = i end)
    dispatch(session, "messagingInvitation", "started", HREF,
      res("Connecting", { accept = HREF .. "/accept", message = "data:text/plain;charset=utf-8,Hi%20Bot%0d%0a" }))
    assert.equal("Hi Bot", inv.message)
    c:close()
  end)

  -- regression: decline reasons other than Local/Global/Unknown raised
  it("decline with every reason of CallDeclineReason, and raise on others", function()
    local c, session = new_client()
    local inv = require("ucwa.resource").new(session, res("Connecting", { decline = HREF .. "/decline" }))
    for _, r in ipairs{ "Local", "Global", "Unknown", "CodecMismatch", "IPv6NotSupported", "UnsupportedMedia" } do
      assert.has_no.errors(function() inv:decline(r, function() end) end)
    end
    assert.has_error(function() inv:decline("Busy") end)
    c:close()
  end)
end)

describe("messages", function()
  -- regression: a message with only a contact link had no sender
  it("take their sender from the contact link when there is no participant", function()
    local c, session = new_client()
    local conv = require("ucwa.resource").new(session, { rel = "conversation", href = APP .. "/conv/1" })
    local heard
    conv:on("message", function(_, m) heard = m end)
    conv:_sender_event{ type = "completed", status = "Success", link = { rel = "message", href = APP .. "/m/1" },
      resource = { rel = "message", href = APP .. "/m/1", properties = { direction = "Incoming" },
                   links = { plainMessage = { href = "data:text/plain,hello" },
                             contact = { href = APP .. "/people/alice", title = "Alice Adams" } },
                   embedded = {} } }
    assert.equal("hello", heard.text)
    assert.equal("Alice Adams", heard.from)
    assert.is_not_nil(heard.sender)
    c:close()
  end)

  -- regression: messages sent in quick succession went out as parallel POSTs
  -- (real servers then post them out of order)
  it("go out one POST at a time per conversation, in order", function()
    local c, session = new_client()
    local conv = require("ucwa.resource").new(session, { rel = "conversation", href = APP .. "/conv/1",
      links = { messaging = { href = APP .. "/conv/1/messaging" } } })
    conv._messaging_model = { links = { sendMessage = { href = APP .. "/conv/1/messaging/messages" } },
                              properties = {} }
    local posted, answers = {}, {}
    session.send = function(_, spec, done) -- white box: hold every answer
      posted[#posted + 1] = spec.raw_body
      answers[#answers + 1] = done
    end
    for i = 1, 3 do conv:send("m" .. i, function() end) end
    assert.same({ "m1" }, posted)
    answers[1](true, nil, { headers = {} })
    assert.same({ "m1", "m2" }, posted)
    answers[2](nil, require("ucwa.errors").new{ code = "ServiceFailure", status = 503 })
    assert.same({ "m1", "m2", "m3" }, posted)
    c:close()
  end)
end)
