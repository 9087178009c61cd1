-- Instant messages outside meetings, through the public API against
-- ucwa-sim, in JSON and XML: two signed-in users talking both ways, a user
-- the simulator plays IMing the bot, declines and unknown people, stop and
-- add messaging, argument limits, and a planted messaging link.
local helpers = require "helpers"
local socket = require "socket"

local drive = helpers.drive

-- Signs in each client; fails the spec if one does not get ready.
local function start_all(...)
  local list = { ... }
  for _, c in ipairs(list) do c:start() end
  drive(nil, function()
    for _, c in ipairs(list) do if c.state ~= "ready" then return false end end
    return true
  end, 10, "sign-in")
end

-- The next incoming invitation of client c (its "invitation" handler).
local function next_invitation(c)
  local got
  local function take(inv) if not got then got = inv end end
  c:on("invitation", take)
  drive(nil, function() return got end, 5, "an incoming invitation")
  c:off("invitation", take)
  return got
end

local function conversation_of(inv)
  local conv, err
  inv:conversation(function(c, e) conv, err = c, e end)
  drive(nil, function() return conv or err end, 5, "the conversation")
  assert.is_nil(err)
  return conv
end

-- Collects the texts of a conversation's incoming messages, "From: text".
local function collect(conv)
  local list = {}
  conv:on("message", function(_, m) list[#list + 1] = m.from .. ": " .. m.text end)
  return list
end

local function messaging_state(conv)
  local m = rawget(conv, "_messaging_model")
  return m and m.properties.state
end

for _, format in ipairs{ "json", "xml" } do
  describe("instant messages (" .. format .. ")", function()
    local sim
    helpers.sim_each(function(s) sim = s end)

    local function user(name)
      return helpers.client(sim, { username = name .. "@contoso.com", format = format })
    end

    it("two signed-in users exchange messages both ways, with the first one and typing", function()
      local alice, bob = user("alice"), user("bob")
      start_all(alice, bob)
      local inv = alice:start_messaging{ to = "sip:bob@contoso.com", subject = "Lunch", importance = "Urgent",
                                         message = "Hi Bob, 100% sure & +1?" }
      local seen = {}
      inv:on("started", function() seen[#seen + 1] = "started" end)
      inv:on("completed", function() seen[#seen + 1] = "completed" end)
      assert.equal("messagingInvitation", inv.rel)
      assert.equal("Outgoing", inv.direction)
      local incoming = next_invitation(bob)
      assert.equal("messagingInvitation", incoming.rel)
      assert.equal("Incoming", incoming.direction)
      assert.equal("Hi Bob, 100% sure & +1?", incoming.message)
      assert.equal("Lunch", incoming.subject)
      assert.equal("Urgent", incoming.importance)
      local from
      incoming:from(function(p) from = p end)
      drive(nil, function() return from end, 5, "the sender")
      assert.equal("Alice Adams", from:display())
      assert.is_false(inv:completed())

      incoming:accept()
      drive(nil, function() return inv:completed() and incoming:completed() end, 5, "both completed")
      assert.equal("Success", inv.status)
      assert.equal("Success", incoming.status)
      assert.same({ "started", "completed" }, seen)

      local a, b = conversation_of(inv), conversation_of(incoming)
      local to_alice, to_bob = collect(a), collect(b)
      local typing
      b:on("typing", function(_, p, on) typing = { p:display(), on } end)
      a:set_typing()
      drive(nil, function() return typing end, 5, "typing")
      assert.same({ "Alice Adams", true }, typing)

      a:send("How about noon?")
      drive(nil, function() return #to_bob == 1 end, 5, "alice -> bob")
      b:send("Noon is fine")
      b:send("See you")
      drive(nil, function() return #to_alice == 2 end, 5, "bob -> alice")
      assert.same({ "Alice Adams: How about noon?" }, to_bob)
      assert.same({ "Bob Brown: Noon is fine", "Bob Brown: See you" }, to_alice)
      assert.same({}, alice.errors)
      assert.same({}, bob.errors)
    end)

    it("a user the simulator plays IMs the bot; the bot accepts and answers", function()
      local bot = helpers.client(sim, { format = format })
      bot:on("invitation", function(inv)
        if inv.rel ~= "messagingInvitation" then return end
        -- connected once the invitation completes with Success
        inv:on("completed", function(i)
          if i.status ~= "Success" then return end
          i:conversation(function(conv)
            conv:on("message", function(c, m) c:send("echo: " .. m.text) end)
            conv:send("You said: " .. i.message)
          end)
        end)
        inv:accept()
      end)
      start_all(bot)
      assert.equal(201, (sim:control("POST", "/_sim/users", { username = "carol@contoso.com", name = "Carol" })))
      local st, r = sim:control("POST", "/_sim/users/carol@contoso.com/message",
                                { to = "bot@contoso.com", text = "hello bot" })
      assert.equal(200, st)
      assert.is_number(r.invitation)
      local function said()
        local _, t = sim:control("GET", "/_sim/users/carol@contoso.com/messages")
        return t.messages
      end
      drive(nil, function() return #said() >= 1 end, 5, "the bot's answer")
      assert.same({ from = "bot@contoso.com", to = "carol@contoso.com", text = "You said: hello bot",
                    session = r.session }, said()[1])
      -- the conversation is open now: the next message goes into it
      st = sim:control("POST", "/_sim/users/carol@contoso.com/message", { to = "bot@contoso.com", text = "again" })
      assert.equal(200, st)
      drive(nil, function() return #said() >= 3 end, 5, "the echo")
      local m = said()
      assert.equal("carol@contoso.com", m[2].from)
      assert.equal("again", m[2].text)
      assert.equal("echo: again", m[3].text)
      local _, rec = sim:control("GET", ("/_sim/invitations/%d"):format(r.invitation))
      assert.equal("Accepted", rec.state)
      assert.same({}, bot.errors)
    end)

    it("in a coroutine: start_messaging to a user the simulator plays, wait, send, receive", function()
      local bot = helpers.client(sim, { format = format })
      start_all(bot)
      local result = {}
      bot:spawn(function()
        local inv, err = bot:start_messaging{ to = "sip:alice@contoso.com", message = "status?" }
        result.answered = inv and not err
        result.status = inv:wait()
        local conv = inv:conversation()
        assert(conv:send("Build 42 is green"))
        local msg = conv:receive()
        result.reply = msg.from .. ": " .. msg.text
        local again = conv:add_messaging() -- messaging is on: no addMessaging link, nothing sent
        result.again = again:wait() .. " " .. again.reason.subcode
      end)
      local function said()
        local _, t = sim:control("GET", "/_sim/users/alice@contoso.com/messages")
        return t.messages
      end
      drive(nil, function() return #said() == 1 end, 5, "the bot's message")
      assert.equal("Build 42 is green", said()[1].text)
      assert.equal(200, (sim:control("POST", "/_sim/users/alice@contoso.com/message",
                                     { to = "bot@contoso.com", text = "thanks" })))
      drive(nil, function() return result.again end, 5, "the coroutine")
      assert.is_true(result.answered)
      assert.equal("Success", result.status)
      assert.equal("Alice Adams: thanks", result.reply)
      assert.equal("Failure NoLink", result.again)
      assert.same({}, bot.errors)
    end)

    it("a messagingInvitation sent by the control API can be declined", function()
      local bot = helpers.client(sim, { format = format })
      start_all(bot)
      local st, r = sim:control("POST", "/_sim/users/alice@contoso.com/invite",
                                { to = "bot@contoso.com", message = "got a minute?", importance = "Normal" })
      assert.equal(200, st)
      local inv = next_invitation(bot)
      assert.equal("got a minute?", inv.message)
      local ok
      inv:decline("Local", function(v) ok = v end)
      drive(nil, function() return ok and inv:completed() end, 5, "the decline")
      assert.equal("Failure", inv.status)
      local _, rec = sim:control("GET", ("/_sim/invitations/%d"):format(r.invitation))
      assert.equal("Declined", rec.state)
    end)

    it("start_messaging to someone who declines, or who is unknown, completes with Failure and a reason", function()
      local alice, bob = user("alice"), user("bob")
      start_all(alice, bob)
      local inv = alice:start_messaging{ to = "sip:bob@contoso.com", message = "hi" }
      next_invitation(bob):decline()
      drive(nil, function() return inv:completed() end, 5, "the declined invitation")
      assert.equal("Failure", inv.status)
      assert.equal("Declined", inv.reason.subcode)

      local unknown = alice:start_messaging{ to = "sip:nobody@contoso.com" }
      local status, reason
      unknown:on("completed", function(i) status, reason = i.status, i.reason end)
      drive(nil, function() return status end, 5, "the unknown person")
      assert.equal("Failure", status)
      assert.equal("NotFound", reason.code)
      assert.equal("DestinationNotFound", reason.subcode)
    end)

    it("stop_messaging ends messaging for both; add_messaging rings again and connects", function()
      local alice, bob = user("alice"), user("bob")
      start_all(alice, bob)
      local inv = alice:start_messaging{ to = "sip:bob@contoso.com" }
      local incoming = next_invitation(bob)
      incoming:accept()
      drive(nil, function() return inv:completed() end, 5, "connected")
      local a, b = conversation_of(inv), conversation_of(incoming)
      local to_bob = collect(b)
      local ok
      b:stop_messaging(function(v, e) ok = v or tostring(e) end)
      drive(nil, function()
        return ok and messaging_state(a) == "Disconnected" and messaging_state(b) == "Disconnected"
      end, 5, "messaging stopped on both sides")
      assert.is_true(ok)
      local sent, err
      a:send("anyone?", function(m, e) sent, err = m, e end)
      drive(nil, function() return sent or err end, 5, "the refused send")
      assert.is_nil(sent)
      assert.equal("NoLink", err.subcode)

      local again = a:add_messaging{ message = "back again" }
      local ring = next_invitation(bob)
      assert.equal("back again", ring.message)
      ring:accept()
      drive(nil, function() return again:completed() end, 5, "messaging added")
      assert.equal("Success", again.status)
      assert.equal("Connected", messaging_state(a))
      a:send("here")
      drive(nil, function() return #to_bob == 1 end, 5, "the message after add_messaging")
      assert.same({ "Alice Adams: here" }, to_bob)
    end)

    it("checks arguments and the documented limits before anything is sent", function()
      local posts = 0 -- the client's own record of what it sent to startMessaging
      local alice = helpers.client(sim, { username = "alice@contoso.com", format = format, log = function(_, m)
        if m:match("^POST .*/messagingInvitations$") then posts = posts + 1 end
      end })
      start_all(alice)
      local function refused(args, pattern)
        local ok, e = pcall(function()
          local inv = alice:start_messaging(args)
          return inv
        end)
        assert.is_false(ok)
        assert.matches(pattern, e)
        assert.matches("5a%-client_messaging_spec", e) -- raised at the caller
      end
      refused({ subject = "x" }, "to is required")
      refused({ to = "bob@contoso.com" }, "to must be a sip: URI")
      refused({ to = "sip:bob" }, "to must be a sip: URI")
      refused({ to = "sip:bob@contoso.com", importance = "High" }, "importance must be \"Normal\", \"Urgent\" or")
      refused({ to = "sip:bob@contoso.com", message = 42 }, "message must be a string")
      refused({ to = "sip:bob@contoso.com", onlineMeetingUri = "sip:x" }, "unknown field onlineMeetingUri")
      assert.has_error(function() alice:start_messaging("sip:bob@contoso.com") end,
        "bad argument #1 to 'start_messaging' (table expected)")
      local long = alice:start_messaging{ to = "sip:bob@contoso.com", subject = ("é"):rep(251) }
      assert.equal("Failure", long.status) -- before any step: nothing was sent
      assert.equal("ParameterValidationFailure", long.reason.subcode)
      local opid = alice:start_messaging{ to = "sip:bob@contoso.com", operationId = ("x"):rep(51) }
      assert.equal("Failure", opid.status)
      assert.matches("operationId", opid.reason.message)
      local t = helpers.gettime() + 0.3
      drive(nil, function() return helpers.gettime() > t end, 5, "a moment")
      assert.equal(0, posts)
      assert.same({}, sim:state().messaging)
      local fine = alice:start_messaging{ to = "sip:bob@contoso.com", subject = ("é"):rep(250) }
      assert.is_nil(fine.status)
      drive(nil, function() return #sim:state().messaging == 1 end, 5, "the one valid invitation")
      assert.equal(1, posts)
      assert.same({ "alice@contoso.com", "bob@contoso.com" }, sim:state().messaging[1].users)
    end)

    it("refuses a planted messaging link to another origin: nothing is sent there", function()
      -- another address: another host than the discovery host's
      local trap = assert(socket.bind("127.0.0.2", 0))
      trap:settimeout(0)
      local _, port = trap:getsockname()
      finally(function() trap:close() end)
      local alice, bob = user("alice"), user("bob")
      start_all(alice, bob)
      sim:control("POST", "/_sim/plants", { link = "messaging", to = "http://127.0.0.2:" .. port, count = 10 })
      local inv = alice:start_messaging{ to = "sip:bob@contoso.com" }
      next_invitation(bob):accept()
      drive(nil, function() return inv:completed() end, 5, "connected")
      local a = conversation_of(inv)
      drive(nil, function() return messaging_state(a) == "Connected" end, 5, "messaging")
      local sent, err
      a:send("through the trap?", function(m, e) sent, err = m, e end)
      drive(nil, function() return sent or err end, 5, "the refused send")
      assert.is_nil(sent)
      assert.equal("Forbidden", err.code)
      assert.equal("UntrustedHost", err.subcode)
      local typed
      a:set_typing(function(v, e) typed = v or e end)
      drive(nil, function() return typed end, 5, "the refused typing")
      assert.equal("Forbidden", typed.code)
      assert.is_nil(trap:accept(), "something connected to the planted origin")
    end)
  end)
end

describe("ucwa.encode of an input's links", function()
  local core = require "ucwa.core"
  it("writes _links as <link> elements in XML, sorted by rel, and refuses a link without href", function()
    local body = core.encode({ to = "sip:a@b.c", _links = { message = { href = "data:,a&b" }, ab = { href = "x" } } },
      "xml")
    assert.matches('<property name="to">sip:a@b.c</property>\n  <link rel="ab" href="x" />\n  '
      .. '<link rel="message" href="data:,a&amp;b" />\n</input>', body, 1, true)
    assert.has_error(function() core.encode({ _links = { message = "data:,x" } }, "xml") end,
      "ucwa.encode: _links must be a table of rel -> {href = string}")
  end)
end)

describe("an incoming messagingInvitation as ReceiveAnIM.md shows it", function()
  local ucwa = require "ucwa"
  local cjson = require "cjson"
  local APP = "/ucwa/oauth/v1/applications/104"

  it("reaches the invitation handlers with its first message decoded and its sender embedded", function()
    local c = ucwa.client{ url = "http://127.0.0.1:9/root", username = "toshm@contoso.com", password = "x" }
    c._session.base = "http://127.0.0.1:9" .. APP
    local inv_href = APP .. "/communication/messagingInvitations/6408"
    local conv = APP .. "/communication/conversations/eee0"
    local body = cjson.encode{
      _links = { self = { href = APP .. "/events?ack=2" }, next = { href = APP .. "/events?ack=3" } },
      sender = { { rel = "communication", href = APP .. "/communication", events = { {
        link = { rel = "messagingInvitation", href = inv_href },
        _embedded = { messagingInvitation = {
          rel = "messagingInvitation", direction = "Incoming", importance = "Normal", state = "Connecting",
          threadId = "Ac7bUftwUcVMzgTzRl+OQchCsUn35Q==", subject = "",
          _links = { self = { href = inv_href }, to = { href = APP .. "/people/toshm@contoso.com" },
            conversation = { href = conv }, accept = { href = inv_href .. "/accept" },
            decline = { href = inv_href .. "/decline" }, messaging = { href = conv .. "/messaging" },
            message = { href = "data:text/plain;charset=utf-8,Hi+Tosh%0d%0a" } },
          _embedded = { from = { rel = "participant", name = "Lene Aaling", uri = "sip:lenea@contoso.com",
            _links = { self = { href = conv .. "/participants/lenea@contoso.com" } } } },
        } },
        type = "started",
      } } } },
    }
    local got
    c:on("invitation", function(inv) got = inv end)
    c._session.registry:dispatch(assert(ucwa.parse_events(body, "application/json")))
    assert.equal("messagingInvitation", got.rel)
    assert.equal("Hi Tosh", got.message) -- form-encoded, the trailing CRLF dropped
    local from
    got:from(function(p) from = p end)
    assert.equal("Lene Aaling", from:display()) -- embedded: no request
    c:close()
  end)
end)
