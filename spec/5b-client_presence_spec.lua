-- The client's presence, note, location and `me`, and presence
-- subscriptions, against ucwa-sim in JSON and XML: a subscribed contact's
-- change seen exactly once, a subscription extended before it lapses (as the
-- simulator saw it) and deleted (no more events), limits checked before
-- anything is sent.
local H = require "support.bot_helper"
local subscription = require "ucwa.subscription"

local call = H.call

-- A client whose log counts the requests it sends, by "METHOD path-suffix".
local function counted(sim, user, format, opts)
  local sent = {}
  local o = { log = function(level, m)
    local method, url = m:match("^(%u+) (%S+)$")
    if level == "debug" and method then sent[#sent + 1] = method .. " " .. url end
  end }
  for k, v in pairs(opts or {}) do o[k] = v end
  local c = H.client(sim, user, format, o)
  c.sent = sent
  return c
end

local function sent_to(c, method, suffix)
  local n = 0
  for _, s in ipairs(c.sent) do
    if s:sub(1, #method + 1) == method .. " " and s:sub(-#suffix) == suffix then n = n + 1 end
  end
  return n
end

local function find(list, name)
  for _, c in ipairs(list) do if c.name == name then return c end end
end

describe("presence", function()
  for _, format in ipairs{ "json", "xml" } do
    describe("in " .. format, function()
      local sim
      before_each(function() sim = H.sim{} end)
      after_each(function()
        subscription.MINUTE = 60
        H.close_all()
        local ok, how, code = sim:stop()
        assert.is_true(ok, "simulator exit: " .. tostring(how) .. " " .. tostring(code))
      end)

      it("sets and reads the bot's presence, note and location; me has its properties", function()
        local bot = counted(sim, "bot@contoso.com", format)
        assert.equal("Online", (call(bot.presence, bot)).availability)
        assert.is_true((call(bot.set_presence, bot, "BeRightBack")))
        local p = call(bot.presence, bot)
        assert.equal("BeRightBack", p.availability)
        assert.is_string(p.activity)
        local _, st = sim:control("GET", "/_sim/users/bot@contoso.com/presence")
        assert.equal("BeRightBack", st.availability)
        assert.is_true((call(bot.set_note, bot, "Answering questions")))
        local note = call(bot.note, bot)
        assert.equal("Answering questions", note.message)
        assert.equal("Personal", note.type)
        assert.is_true((call(bot.set_location, bot, "Server room")))
        assert.equal("Server room", (call(bot.location, bot)).location)
        local me = call(bot.me, bot)
        assert.equal("Meeting Bot", me.name)
        assert.equal("sip:bot@contoso.com", me.uri)
        assert.equal("Engineering", me.department)
        assert.equal("Bot", me.title)
        assert.same({ "bot@contoso.com" }, me.emailAddresses)
        assert.equal(1, sent_to(bot, "POST", "/me/presence"))
        assert.same({}, bot.errors)
      end)

      it("raises on an unknown availability and refuses a long location, sending nothing", function()
        local bot = counted(sim, "bot@contoso.com", format)
        assert.has_error(function() bot:set_presence("Sleeping") end,
          "bad argument #1 to 'set_presence' (availability must be one of Online, Busy, DoNotDisturb, "
          .. "BeRightBack, Away, Offwork; got Sleeping)")
        assert.has_error(function() bot:set_presence("IdleOnline") end) -- a state, not a choice
        assert.has_error(function() bot:set_note(42) end)
        local ok, err = call(bot.set_location, bot, ("é"):rep(61))
        assert.is_nil(ok)
        assert.equal("ParameterValidationFailure", err.subcode)
        assert.is_true((call(bot.set_location, bot, ("é"):rep(60)))) -- characters, not bytes
        assert.equal(0, sent_to(bot, "POST", "/me/presence"))
        assert.equal(1, sent_to(bot, "POST", "/me/location"))
        local _, st = sim:control("GET", "/_sim/users/bot@contoso.com/presence")
        assert.equal("Online", st.availability)
        -- in a spawned coroutine: results returned
        local got
        bot:spawn(function() got = { bot:set_presence("Away"), (bot:presence()).availability } end)
        H.wait(function() return got end, "the coroutine")
        assert.same({ true, "Away" }, got)
      end)

      it("without makeMeAvailable there is no presence link: NoLink, nothing sent", function()
        local bot = counted(sim, "bot@contoso.com", format, { available = false })
        local ok, err = call(bot.set_presence, bot, "Busy")
        assert.is_nil(ok)
        assert.equal("NoLink", err.subcode)
        assert.equal(0, sent_to(bot, "POST", "/me/presence"))
      end)

      it("sees a subscribed contact's presence change exactly once", function()
        local bot = H.client(sim, "bot@contoso.com", format)
        local alice = find(call(bot.search, bot, "alice"), "Alice Adams")
        assert.equal("Offline", (call(alice.presence, alice)).availability)
        local seen = {}
        alice:on("presence", function(c, p)
          assert.equal(alice, c)
          seen[#seen + 1] = p.availability
        end)
        local sub = call(bot.subscribe, bot, { alice }, { duration = 15 })
        assert.equal("active", sub.state)
        -- Alice signs in (a client of her own): Online
        local her = H.client(sim, "alice@contoso.com", format)
        H.wait(function() return #seen >= 1 end, "Alice online", 10)
        assert.same({ "Online" }, seen)
        -- she sets Busy, then Busy again (no change)
        assert.is_true((call(her.set_presence, her, "Busy")))
        assert.is_true((call(her.set_presence, her, "Busy")))
        H.wait(function() return #seen >= 2 end, "Alice busy", 10)
        H.settle(1)
        assert.same({ "Online", "Busy" }, seen)
        assert.same({}, bot.errors)
      end)

      it("sees a contact go idle when its client is quiet, and Offline when it signs out", function()
        assert.equal(200, (sim:control("POST", "/_sim/people", { idle = 1 })))
        local bot = H.client(sim, "bot@contoso.com", format)
        local bob = find(call(bot.contacts, bot), "Bob Brown")
        local seen = {}
        bob:on("presence", function(_, p) seen[#seen + 1] = p.availability end)
        assert.is_truthy((call(bot.subscribe, bot, { bob })))
        local his = H.client(sim, "bob@contoso.com", format)
        -- (the channel's medium aggregation, 5 s, may fold Online into the idle change)
        H.wait(function() return seen[#seen] == "IdleOnline" end, "bob online, then idle", 15)
        local before = #seen
        his:close()
        H.wait(function() return seen[#seen] == "Offline" end, "bob offline", 10)
        assert.equal(before + 1, #seen)
        for i = 2, #seen do assert.are_not.equal(seen[i - 1], seen[i], "the same presence fired twice") end
        assert.same({}, bot.errors)
      end)

      it("extends the subscription before it lapses, and after delete hears nothing more", function()
        assert.equal(200, (sim:control("POST", "/_sim/people", { minute = 0.2 })))
        subscription.MINUTE = 0.2
        local bot = H.client(sim, "bot@contoso.com", format)
        local contacts = call(bot.contacts, bot)
        local alice, bob = find(contacts, "Alice Adams"), find(contacts, "Bob Brown")
        local sub = call(bot.subscribe, bot, { alice }, { duration = 10 })        -- 2 s
        local other = call(bot.subscribe, bot, { "sip:bob@contoso.com" }, { duration = 30 })
        local ended
        sub:on("deleted", function(_, why) ended = why end)
        -- past two durations: extended each time before it lapsed
        H.settle(4.5)
        local _, state = sim:control("GET", "/_sim/people")
        assert.equal(0, state.ended.expired)
        local s = state.subscriptions[1]
        assert.equal(sub.id, s.id)
        assert.is_true(#s.extensions >= 2, "extensions: " .. #s.extensions)
        for _, e in ipairs(s.extensions) do
          assert.is_true(e.remaining > 0, "extended only after it had lapsed")
          assert.equal(10, e.minutes)
        end
        assert.equal("active", sub.state)
        assert.is_nil(ended)
        -- deleted: the simulator forgets it, and alice's changes no longer come
        assert.is_true((call(sub.delete, sub)))
        assert.equal("deleted", ended)
        assert.equal("deleted", sub.state)
        _, state = sim:control("GET", "/_sim/people")
        assert.equal(1, state.ended.deleted)
        assert.equal(1, #state.subscriptions)
        local heard = {}
        alice:on("presence", function(_, p) heard[#heard + 1] = "alice " .. p.availability end)
        bob:on("presence", function(_, p) heard[#heard + 1] = "bob " .. p.availability end)
        -- bob is held by the bot: the event of the other subscription reaches him
        sim:control("POST", "/_sim/users/alice@contoso.com/presence", { availability = "Away" })
        sim:control("POST", "/_sim/users/bob@contoso.com/presence", { availability = "Away" })
        H.wait(function() return #heard >= 1 end, "bob's change", 10)
        H.settle(0.5)
        assert.same({ "bob Away" }, heard)
        -- no timer of the deleted one is left to extend it
        local extensions = #s.extensions
        H.settle(2.5)
        _, state = sim:control("GET", "/_sim/people")
        assert.equal(1, #state.subscriptions)
        assert.equal(other.id, state.subscriptions[1].id)
        assert.is_true(#state.subscriptions[1].extensions <= 1)
        assert.is_true(extensions >= 2)
        assert.same({}, bot.errors)
      end)

      it("ends a subscription as lost when the application is created again", function()
        local bot = H.client(sim, "bot@contoso.com", format)
        local resumed
        bot:on("resumed", function(info) resumed = info.reason end)
        local sub = call(bot.subscribe, bot, { "sip:alice@contoso.com" })
        local why
        sub:on("deleted", function(_, w) why = w end)
        local apps = sim:state().applications
        assert.equal(200, (sim:control("POST", "/_sim/apps/" .. apps[#apps].id .. "/forget", {})))
        H.wait(function() return resumed end, "the application created again", 10)
        assert.equal("lost", why)
        assert.equal("lost", sub.state)
        local ok, err = call(sub.extend, sub)
        assert.is_nil(ok)
        assert.equal("SubscriptionEnded", err.subcode)
      end)

      it("adds and removes members", function()
        local bot = H.client(sim, "bot@contoso.com", format)
        local contacts = call(bot.contacts, bot)
        local alice, bob = find(contacts, "Alice Adams"), find(contacts, "Bob Brown")
        local sub = call(bot.subscribe, bot, { alice })
        assert.is_true((call(sub.add, sub, { bob })))
        local _, state = sim:control("GET", "/_sim/people")
        assert.same({ "alice@contoso.com", "bob@contoso.com" }, state.subscriptions[1].members)
        assert.is_true((call(sub.remove, sub, alice)))
        _, state = sim:control("GET", "/_sim/people")
        assert.same({ "bob@contoso.com" }, state.subscriptions[1].members)
        local ok, err = call(sub.remove, sub, alice)
        assert.is_nil(ok)
        assert.equal("NotAMember", err.subcode)
        -- a duration out of range fails before anything is sent; a wrong type raises
        ok, err = call(bot.subscribe, bot, { bob }, { duration = 31 })
        assert.is_nil(ok)
        assert.equal("ParameterValidationFailure", err.subcode)
        assert.has_error(function() bot:subscribe({ bob }, { duration = "10" }) end)
        assert.has_error(function() bot:subscribe({ 42 }) end)
        _, state = sim:control("GET", "/_sim/people")
        assert.equal(1, #state.subscriptions)
      end)
    end)
  end
end)
