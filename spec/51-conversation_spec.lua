-- Conversations, the roster, the lobby and messages, against ucwa-sim, in
-- JSON and XML alike.
local H = require "support.bot_helper"
local ucwa = require "ucwa"
local conversation = require "ucwa.conversation"

local function names(list)
  local out = {}
  for i, p in ipairs(list) do out[i] = p:display() end
  return out
end

local function sorted_names(list)
  local out = names(list)
  table.sort(out)
  return out
end

local function summary(log)
  local out = {}
  for i, e in ipairs(log) do out[i] = e.name .. " " .. tostring(e.who) .. " " .. tostring(e.extra) end
  return out
end

describe("conversations", function()
  for _, format in ipairs{ "json", "xml" } do
    describe("in " .. format, function()
      local sim
      before_each(function() sim = H.sim{ typing_timeout = 0.5 } end)
      after_each(function()
        H.close_all()
        local ok, how, code = sim:stop()
        assert.is_true(ok, "simulator exit: " .. tostring(how) .. " " .. tostring(code))
      end)

      it("waits in the lobby, is admitted, and follows the roster", function()
        assert.equal(200, (sim:control("POST", "/_sim/meetings/DEMO1/join", { user = "alice@contoso.com" })))
        local bot = H.client(sim, "bot@contoso.com", format)
        local inv = H.join(bot, H.DEMO1, "Roster test")
        H.wait(function() return H.member_state(sim, "DEMO1", "bot@contoso.com") == "lobby" end, "bot in lobby")
        local conv = H.conversation(inv)
        H.wait(function() return conv.state == "InLobby" end, "InLobby")
        local log = H.recorder(conv, { "participant_added", "participant_updated", "participant_removed", "lobby" })
        -- What came before the recorder: the bot itself, in the lobby.
        assert.same({ "Meeting Bot" }, names(conv:roster("lobby")))
        assert.is_true(conv:roster()[1]:is_local())
        assert.is_true(conv:roster()[1].inLobby)

        assert.equal(200, (sim:control("POST", "/_sim/meetings/DEMO1/admit", { user = "bot@contoso.com" })))
        H.completed(inv)
        assert.equal("Success", inv.status)
        H.wait(function() return conv.state == "Connected" end, "Connected")
        assert.same({
          "participant_removed Meeting Bot lobby",
          "participant_added Meeting Bot attendees",
          "participant_added Alice Adams leaders",
        }, summary(log))
        assert.equal("Roster test", conv.subject)
        assert.is_string(conv.threadId)
        local me = log[2].obj
        assert.is_false(me.inLobby)
        assert.equal("Attendee", me.role)
        assert.equal("attendees", me.collection)
        local alice = log[3].obj
        assert.equal("Leader", alice.role)
        assert.equal("sip:alice@contoso.com", alice.uri)
        assert.same({ "Meeting Bot", "Alice Adams" }, names(conv:roster()))

        -- participants() asks the server, and gives the same objects.
        local list, err
        conv:participants(function(l, e) list, err = l, e or false end)
        H.wait(function() return list or err end, "participants")
        assert.same({ "Alice Adams", "Meeting Bot" }, sorted_names(list))
        for _, p in ipairs(list) do
          if p.uri == "sip:alice@contoso.com" then assert.equal(alice, p) else assert.equal(me, p) end
        end
        local leaders
        conv:leaders(function(l) leaders = l end)
        H.wait(function() return leaders end, "leaders")
        assert.same({ "Alice Adams" }, names(leaders))
        assert.equal("Leader", leaders[1].role) -- known properties are kept

        -- Someone else is admitted, then the bot is promoted.
        assert.equal(200, (sim:control("POST", "/_sim/meetings/DEMO1/join", { user = "carol@contoso.com",
                                                                               name = "Carol" })))
        assert.equal(200, (sim:control("POST", "/_sim/meetings/DEMO1/admit", { user = "carol@contoso.com" })))
        H.wait(function() return #log >= 4 end, "carol")
        assert.same("participant_added Carol attendees", summary(log)[4])
        assert.equal(200, (sim:control("POST", "/_sim/meetings/DEMO1/promote", { user = "bot@contoso.com" })))
        H.wait(function() return #log >= 5 end, "promotion")
        assert.same("participant_updated Meeting Bot leaders", summary(log)[5])
        assert.equal("Leader", me.role)
        -- Carol leaves.
        assert.equal(200, (sim:control("POST", "/_sim/meetings/DEMO1/leave", { user = "carol@contoso.com" })))
        H.wait(function() return #log >= 6 end, "carol leaving")
        assert.same("participant_removed Carol attendees", summary(log)[6])
        assert.same({ "Meeting Bot", "Alice Adams" }, names(conv:roster()))
        assert.equal(0, #bot.errors)
      end)

      it("admits and rejects from the lobby as a leader", function()
        local alice = H.client(sim, "alice@contoso.com", format)
        local ainv = H.completed(H.join(alice))
        assert.equal("Success", ainv.status)
        local aconv = H.conversation(ainv)
        local arrivals = {}
        aconv:on("lobby", function(c, p)
          assert.equal(aconv, c)
          arrivals[#arrivals + 1] = p
        end)

        local bot = H.client(sim, "bot@contoso.com", format)
        local binv = H.join(bot)
        H.wait(function() return #arrivals == 1 end, "the bot in alice's lobby")
        local p = arrivals[1]
        assert.equal("Meeting Bot", p:display())
        assert.is_true(p.inLobby)
        assert.is_true(p:can("admit"))
        assert.is_false(p:is_local())
        local lobby
        aconv:lobby(function(l) lobby = l end)
        H.wait(function() return lobby end, "lobby list")
        assert.same({ "Meeting Bot" }, names(lobby))
        assert.equal(p, lobby[1])
        local admitted
        p:admit(function(ok, err) admitted = ok or err end)
        H.completed(binv)
        assert.is_true(admitted)
        assert.equal("Success", binv.status)
        assert.equal("in", H.member_state(sim, "DEMO1", "bot@contoso.com"))

        local bob = H.client(sim, "bob@contoso.com", format)
        local bobinv = H.join(bob)
        H.wait(function() return #arrivals == 2 end, "bob in the lobby")
        local rejected
        arrivals[2]:reject(function(ok, err) rejected = ok or err end)
        H.completed(bobinv)
        assert.is_true(rejected)
        assert.equal("Failure", bobinv.status)
        assert.equal("Denied", bobinv.reason.subcode)
        assert.is_nil(H.member_state(sim, "DEMO1", "bob@contoso.com"))
        -- An attendee cannot admit: the links say so, and the server refuses.
        local bconv = H.conversation(binv)
        local blobby
        bconv:lobby(function(l) blobby = l end)
        H.wait(function() return blobby end, "attendee's lobby")
        assert.same({}, blobby)
        assert.equal(0, #alice.errors + #bot.errors + #bob.errors)
      end)

      it("sends and receives plain and HTML messages", function()
        local alice = H.client(sim, "alice@contoso.com", format)
        local aconv = H.conversation(H.completed(H.join(alice)))
        local bot = H.client(sim, "bot@contoso.com", format, { })
        local binv = H.join(bot)
        H.wait(function() return H.member_state(sim, "DEMO1", "bot@contoso.com") == "lobby" end, "lobby")
        sim:control("POST", "/_sim/meetings/DEMO1/admit", {})
        local conv = H.conversation(H.completed(binv))
        H.wait(function() return conv.state == "Connected" and conv:html_allowed() end, "messaging")
        local heard, aheard = {}, {}
        conv:on("message", function(c, m) assert.equal(conv, c); heard[#heard + 1] = m end)
        aconv:on("message", function(_, m) aheard[#aheard + 1] = m end)

        -- From a virtual participant: URL-encoded text, spaces as "+".
        local text = "!who & 1+1=2 ✓ 100% sure"
        local t0 = os.time()
        assert.equal(200, (sim:control("POST", "/_sim/meetings/DEMO1/join", { user = "carol@contoso.com",
                                                                               name = "Carol" })))
        sim:control("POST", "/_sim/meetings/DEMO1/admit", { user = "carol@contoso.com" })
        assert.equal(200, (sim:control("POST", "/_sim/meetings/DEMO1/message", { from = "carol@contoso.com",
                                                                                  text = text })))
        H.wait(function() return #heard == 1 end, "carol's message")
        local m = heard[1]
        assert.equal(text, m.text)
        assert.is_nil(m.html)
        assert.equal("Carol", m.from)
        assert.equal("Carol", m.sender:display())
        assert.equal("Incoming", m.direction)
        assert.is_number(m.time)
        assert.is_true(math.abs(m.time - t0) < 5, "time " .. tostring(m.time))
        assert.equal("Success", m.status)

        -- HTML from a participant: the html and a plain rendering.
        sim:control("POST", "/_sim/meetings/DEMO1/message", { from = "carol@contoso.com",
                                                              html = "<p><b>Bold</b> and plain</p>" })
        H.wait(function() return #heard == 2 end, "html message")
        assert.equal("<p><b>Bold</b> and plain</p>", heard[2].html)
        assert.equal("Bold and plain", heard[2].text)

        -- The bot speaks: a message operation that completes, heard by alice.
        local msg, completed = nil, 0
        conv:send("Hello, room! 1+1", function(mm, err)
          assert.is_nil(err)
          msg = mm
          mm:on("completed", function() completed = completed + 1 end)
        end)
        H.wait(function() return msg and msg:completed() and #aheard >= 3 end, "delivery")
        assert.equal("Success", msg.status)
        assert.equal("Outgoing", msg.direction)
        assert.equal("Hello, room! 1+1", msg.text)
        assert.equal("Carol", aheard[1].from)
        assert.equal("Bold and plain", aheard[2].text)
        assert.equal("Hello, room! 1+1", aheard[3].text)
        assert.equal("Meeting Bot", aheard[3].from)
        assert.is_nil(aheard[3].html)
        -- HTML, negotiated by the simulator.
        local hmsg
        conv:send("<i>slanted</i> &lt;x&gt;", { format = "html" }, function(mm) hmsg = mm end)
        H.wait(function() return hmsg and hmsg:completed() and #aheard >= 4 end, "html delivery")
        assert.equal("Success", hmsg.status)
        assert.equal("<i>slanted</i> &lt;x&gt;", aheard[4].html)
        assert.equal("slanted <x>", aheard[4].text)
        assert.equal("slanted <x>", hmsg.text)
        H.settle(0.1)
        assert.equal(1, completed)
        assert.equal(2, #heard) -- the bot does not hear itself
        assert.equal(4, #aheard)
        assert.equal(0, #alice.errors + #bot.errors)
      end)

      it("runs top to bottom in a coroutine, and leaves", function()
        assert.equal(200, (sim:control("POST", "/_sim/meetings/DEMO1/join", { user = "alice@contoso.com" })))
        local bot = H.client(sim, "bot@contoso.com", format)
        local result = {}
        bot:spawn(function()
          local inv = bot:join_meeting{ onlineMeetingUri = H.DEMO1 }
          result.status = inv:wait()
          local conv = inv:conversation()
          local list = conv:participants()
          result.names = sorted_names(list)
          local msg = conv:send("in a coroutine")
          result.sent = msg:wait()
          conv:on("deleted", function() result.deleted = true end)
          result.left = conv:leave()
          result.conv = conv
        end)
        H.wait(function() return H.member_state(sim, "DEMO1", "bot@contoso.com") == "lobby" end, "lobby")
        sim:control("POST", "/_sim/meetings/DEMO1/admit", {})
        H.wait(function() return result.deleted end, "the story")
        assert.equal("Success", result.status)
        assert.same({ "Alice Adams", "Meeting Bot" }, result.names)
        assert.equal("Success", result.sent)
        assert.is_true(result.left)
        assert.equal("Disconnected", result.conv.state)
        assert.is_nil(H.member_state(sim, "DEMO1", "bot@contoso.com"))
        assert.equal(0, #bot.errors)
      end)

      it("keeps a conversation alive while it goes on, without a reference", function()
        local bot = H.client(sim, "bot@contoso.com", format)
        local heard = 0
        local inv = H.join(bot)
        H.wait(function() return H.member_state(sim, "DEMO1", "bot@contoso.com") == "lobby" end, "lobby")
        -- regression: inv:conversation() was called before the client had the
        -- invitation's conversation link (the simulator's lobby is ahead of the
        -- client's events on a loaded machine) and gave nil
        do
          local conv = H.conversation(inv)
          conv:on("message", function() heard = heard + 1 end)
        end
        sim:control("POST", "/_sim/meetings/DEMO1/admit", {})
        H.completed(inv)
        inv = nil -- luacheck: ignore
        for _ = 1, 3 do collectgarbage() end
        sim:control("POST", "/_sim/meetings/DEMO1/join", { user = "alice@contoso.com" })
        sim:control("POST", "/_sim/meetings/DEMO1/message", { from = "alice@contoso.com", text = "still there?" })
        H.wait(function() return heard == 1 end, "message after a collection")
      end)

      it("ends its conversations when the session is lost (resume)", function()
        local bot = H.client(sim, "bot@contoso.com", format)
        local inv = H.join(bot)
        H.wait(function() return H.member_state(sim, "DEMO1", "bot@contoso.com") == "lobby" end, "lobby")
        sim:control("POST", "/_sim/meetings/DEMO1/admit", {})
        local conv = H.conversation(H.completed(inv))
        local ended, resumed = {}, {}
        conv:on("deleted", function(_, reason) ended[#ended + 1] = reason end)
        bot:on("resumed", function(info) resumed[#resumed + 1] = info.reason end)
        local _, state = sim:control("GET", "/_sim/state")
        local id
        for _, a in ipairs(state.applications) do
          if a.user == "bot@contoso.com" then id = a.id end
        end
        assert(id, "application id")
        assert.equal(200, (sim:control("POST", ("/_sim/apps/%s/resume"):format(
          type(id) == "number" and ("%d"):format(id) or id), {})))
        H.wait(function() return #ended == 1 end, "conversation ended")
        assert.same({ "resume" }, resumed)
        assert.equal("SessionLost", ended[1].subcode)
        assert.equal("Disconnected", conv.state)
        H.settle(0.1)
        assert.equal(1, #ended)
      end)

      it("reports typing and refuses what messaging does not allow", function()
        local bot = H.client(sim, "bot@contoso.com", format)
        sim:control("POST", "/_sim/meetings/DEMO1/join", { user = "alice@contoso.com" })
        local inv = H.join(bot)
        H.wait(function() return H.member_state(sim, "DEMO1", "bot@contoso.com") == "lobby" end, "lobby")
        local conv = H.conversation(inv)
        -- Not connected yet: no sendMessage link.
        local err
        conv:send("too early", function(_, e) err = e end)
        H.wait(function() return err end, "early send")
        assert.equal("NoLink", err.subcode)
        -- Nor a setIsTyping link.
        local terr
        conv:set_typing(function(_, e) terr = e end)
        H.wait(function() return terr end, "early set_typing")
        assert.equal("NoLink", terr.subcode)
        sim:control("POST", "/_sim/meetings/DEMO1/admit", {})
        H.completed(inv)
        H.wait(function() return conv.state == "Connected" end, "Connected")

        -- Typing events as a server sends them (typingParticipants_ref).
        local typing = {}
        conv:on("typing", function(_, p, on) typing[#typing + 1] = p:display() .. "=" .. tostring(on) end)
        local roster_before = #conv:roster()
        local ahref = conv.href .. "/participants/alice@contoso.com"
        local function batch(kind)
          if format == "json" then
            return ([[{"_links":{"self":{"href":"/e?ack=9"},"next":{"href":"/e?ack=10"}},"sender":[
              {"rel":"conversation","href":"%s","events":[{"link":{"rel":"participant","href":"%s"},
               "in":{"rel":"typingParticipants","href":"%s/messaging/typingParticipants"},"type":"%s"}]}]}]])
              :format(conv.href, ahref, conv.href, kind), "application/json"
          end
          return ([[<events href="/e?ack=9" xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa">
            <link rel="next" href="/e?ack=10"/><sender rel="conversation" href="%s">
            <%s rel="participant" href="%s"><in rel="typingParticipants" href="%s/messaging/typingParticipants"/>
            </%s></sender></events>]]):format(conv.href, kind, ahref, conv.href, kind), "application/xml"
        end
        for _, kind in ipairs{ "added", "deleted" } do
          local parsed = assert(ucwa.parse_events(batch(kind)))
          bot._session.registry:dispatch(parsed) -- white box: what the channel would hand over
        end
        assert.same({ "Alice Adams=true", "Alice Adams=false" }, typing)
        assert.equal(roster_before, #conv:roster())
        assert.has_error(function() conv:send(42) end)
        assert.has_error(function() conv:send("x", { format = "rtf" }) end)
        assert.has_error(function() conv:on("mesage", print) end)
      end)

      it("tells the others it is typing, and hears participants type", function()
        local alice = H.client(sim, "alice@contoso.com", format)
        local aconv = H.conversation(H.completed(H.join(alice)))
        local bot = H.client(sim, "bot@contoso.com", format)
        local inv = H.join(bot)
        H.wait(function() return H.member_state(sim, "DEMO1", "bot@contoso.com") == "lobby" end, "lobby")
        sim:control("POST", "/_sim/meetings/DEMO1/admit", {})
        local conv = H.conversation(H.completed(inv))
        H.wait(function() return conv.state == "Connected" end, "Connected")
        local seen, aseen = {}, {}
        conv:on("typing", function(c, p, on)
          assert.equal(conv, c)
          seen[#seen + 1] = p:display() .. "=" .. tostring(on)
        end)
        aconv:on("typing", function(_, p, on) aseen[#aseen + 1] = { p = p, on = on } end)

        -- The bot types: alice's application sees it, and so does the simulator.
        local ok, terr
        conv:set_typing(function(r, e) ok, terr = r, e end)
        H.wait(function() return ok or terr end, "set_typing")
        assert.is_nil(terr)
        assert.is_true(ok)
        H.wait(function() return #aseen == 1 end, "alice sees the bot typing")
        assert.is_true(aseen[1].on)
        assert.equal("Meeting Bot", aseen[1].p:display())
        assert.equal(aseen[1].p, aconv:roster("attendees")[1])
        local _, m = sim:control("GET", "/_sim/meetings/DEMO1")
        for _, x in ipairs(m.members) do
          assert.equal(x.key == "bot@contoso.com", x.typing, x.key)
        end
        -- Sending a message ends it.
        local msg
        conv:send("typed", function(mm) msg = mm end)
        H.wait(function() return #aseen == 2 end, "typing ends with the message")
        assert.is_false(aseen[2].on)
        assert.equal(aseen[1].p, aseen[2].p)
        H.wait(function() return msg and msg:completed() end, "message")

        -- A virtual participant types: true, then false when it stops.
        sim:control("POST", "/_sim/meetings/DEMO1/join", { user = "carol@contoso.com", name = "Carol", lobby = false })
        H.wait(function() return #conv:roster() == 3 end, "carol in the roster")
        assert.equal(200, (sim:control("POST", "/_sim/meetings/DEMO1/typing", { from = "carol@contoso.com" })))
        H.wait(function() return #seen == 1 end, "carol typing")
        assert.same({ "Carol=true" }, seen)
        H.wait(function() return #seen == 2 end, "carol stops typing (timeout)")
        assert.same({ "Carol=true", "Carol=false" }, seen)
        -- ... and when she speaks.
        local heard = {}
        conv:on("message", function(_, mm) heard[#heard + 1] = mm.text end)
        sim:control("POST", "/_sim/meetings/DEMO1/typing", { from = "carol@contoso.com" })
        H.wait(function() return #seen == 3 end, "carol typing again")
        sim:control("POST", "/_sim/meetings/DEMO1/message", { from = "carol@contoso.com", text = "there" })
        H.wait(function() return #heard == 1 end, "carol's message")
        assert.same({ "Carol=true", "Carol=false", "Carol=true", "Carol=false" }, seen)
        assert.equal(3, #conv:roster()) -- typing is not a roster change
        H.wait(function() return #aseen == 6 end, "alice hears carol too")
        assert.equal("Carol", aseen[3].p:display())
        assert.equal(0, #alice.errors + #bot.errors)
      end)

      it("ejects, promotes and demotes as a leader", function()
        local alice = H.client(sim, "alice@contoso.com", format)
        local aconv = H.conversation(H.completed(H.join(alice)))
        local log = H.recorder(aconv, { "participant_added", "participant_updated", "participant_removed" })
        local bot = H.client(sim, "bot@contoso.com", format)
        local inv = H.join(bot)
        H.wait(function() return H.member_state(sim, "DEMO1", "bot@contoso.com") == "lobby" end, "lobby")
        sim:control("POST", "/_sim/meetings/DEMO1/admit", {})
        local conv = H.conversation(H.completed(inv))
        local blog = H.recorder(conv, { "participant_updated" })
        local ended
        conv:on("deleted", function(_, reason) ended = reason or false end)
        H.wait(function() return #aconv:roster("attendees") == 1 end, "the bot among alice's attendees")
        local p = aconv:roster("attendees")[1]
        assert.equal("Meeting Bot", p:display())
        assert.is_true(p:can("eject"))
        assert.is_true(p:can("promote"))
        assert.is_false(p:can("demote"))
        -- The bot, an attendee, may not act on alice.
        local a = conv:roster("leaders")[1]
        assert.equal("Alice Adams", a:display())
        assert.is_false(a:can("eject"))
        local n = #log

        local function act(what)
          local r
          p[what](p, function(ok, err) r = ok or err end)
          H.wait(function() return r ~= nil end, what)
          return r
        end
        assert.is_true(act("promote"))
        H.wait(function() return #log > n end, "promotion")
        assert.same({ "participant_updated Meeting Bot leaders" }, summary({ table.unpack(log, n + 1) }))
        assert.equal("Leader", p.role)
        assert.equal("leaders", p.collection)
        assert.is_true(p:can("demote"))
        assert.is_false(p:can("promote"))
        H.wait(function() return #blog == 1 end, "the bot hears of its promotion")
        assert.equal("participant_updated Meeting Bot leaders", summary(blog)[1])
        assert.is_true(blog[1].obj:is_local())

        assert.is_true(act("demote"))
        H.wait(function() return #log > n + 1 end, "demotion")
        assert.equal("participant_updated Meeting Bot attendees", summary(log)[n + 2])
        assert.equal("Attendee", p.role)
        assert.is_true(p:can("promote"))

        assert.is_true(act("eject"))
        H.wait(function() return ended ~= nil and #log > n + 2 end, "ejection")
        assert.equal("participant_removed Meeting Bot attendees", summary(log)[n + 3])
        assert.equal("Removed", ended.subcode)
        assert.equal("Disconnected", conv.state)
        assert.same({}, aconv:roster("attendees"))
        assert.is_nil(H.member_state(sim, "DEMO1", "bot@contoso.com"))
        -- Gone: the server refuses a second ejection.
        local again = act("eject")
        assert.equal(404, again.status)
        assert.equal(0, #bot.errors)
      end)
    end)
  end

  describe("message text", function()
    it("decodes data: URLs in base64 and URL-encoded forms", function()
      assert.equal("Hi Tosh\r\n", conversation.decode_data_url("data:text/plain;charset=utf-8,Hi+Tosh%0d%0a"))
      assert.equal("a+b c", conversation.decode_data_url("data:text/plain;charset=utf-8,a%2Bb%20c"))
      local text, mt = conversation.decode_data_url("data:text/html;charset=utf-8;base64,PGI+aGk8L2I+")
      assert.equal("<b>hi</b>", text)
      assert.equal("text/html;charset=utf-8", mt)
      assert.is_nil((conversation.decode_data_url("http://example.com/")))
    end)

    it("renders HTML as plain text", function()
      assert.equal("a & b <c> \"d\" é\nx",
        conversation.strip_html("<p>a &amp; b &lt;c&gt; &quot;d&quot; &#233;<br/>x</p>"))
    end)

    it("fills text, time and sender from a received message (both formats)", function()
      local fixtures = {
        json = { [[{"rel":"message","direction":"Incoming","timeStamp":"\/Date(1400000000123)\/",
          "_links":{"self":{"href":"/c/1/messaging/messages/3"},
          "participant":{"href":"/c/1/participants/x@y","title":"Xavier"},
          "plainMessage":{"href":"data:text/plain;charset=utf-8,Hi+Tosh%0d%0a"}}}]], "application/json" },
        xml = { [[<resource rel="message" href="/c/1/messaging/messages/3"
          xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa">
          <link rel="participant" href="/c/1/participants/x@y" title="Xavier"/>
          <link rel="plainMessage" href="data:text/plain;charset=utf-8,Hi+Tosh%0d%0a"/>
          <property name="direction">Incoming</property>
          <property name="timeStamp">2014-05-13T16:53:20.123Z</property></resource>]], "application/xml" },
      }
      for format, f in pairs(fixtures) do
        local client = ucwa.client{ url = "http://127.0.0.1:9/", username = "u", password = "p", format = format }
        local conv = require("ucwa.resource").new(client._session, { rel = "conversation", href = "/c/1" })
        local heard = {}
        conv:on("message", function(_, m) heard[#heard + 1] = m end)
        local res = assert(ucwa.parse(f[1], f[2]))
        conv:_sender_event{ type = "completed", status = "Success",
                            link = { rel = "message", href = "/c/1/messaging/messages/3" }, resource = res }
        conv:_sender_event{ type = "completed", status = "Success",
                            link = { rel = "message", href = "/c/1/messaging/messages/3" }, resource = res }
        assert.equal(1, #heard, format)
        assert.equal("Hi Tosh", heard[1].text)
        assert.equal("Xavier", heard[1].from)
        assert.equal(1400000000.123, heard[1].time)
        client:close()
      end
    end)
  end)
end)
