-- Other people through the client, against ucwa-sim in JSON and XML:
-- search results typed like the reference's samples, a contact's presence,
-- note, location, modalities and photo, the contact list and its groups,
-- search limits checked before sending, and contact links planted to
-- another host refused with nothing secret sent there.
local ucwa = require "ucwa"
local helpers = require "helpers"
local H = require "support.bot_helper"

local call = H.call

local EXT = { json = "json", xml = "xml" }

-- A reference sample parsed by the client's own parser.
local function sample(name, format)
  local body = helpers.read(helpers.fixtures .. "/samples/" .. name .. "." .. EXT[format])
  return assert(ucwa.parse(body, "application/" .. format))
end

-- Every property both have is of the sample's Lua type (and a list's items too).
local function assert_typed_like(want, got, what)
  local common = 0
  for k, v in pairs(want) do
    if got[k] ~= nil then
      common = common + 1
      assert.equal(type(v), type(got[k]), what .. "." .. k)
      if type(v) == "table" then
        for i, x in ipairs(got[k]) do assert.equal(type(v[1]), type(x), what .. "." .. k .. "[" .. i .. "]") end
      end
    end
  end
  assert.is_true(common >= 5, what .. ": only " .. common .. " properties in common with the sample")
end

local function find(list, name)
  for _, c in ipairs(list) do if c.name == name then return c end end
end

describe("people", function()
  for _, format in ipairs{ "json", "xml" } do
    describe("in " .. format, function()
      local sim
      before_each(function() sim = H.sim{} end)
      after_each(function()
        H.close_all()
        local ok, how, code = sim:stop()
        assert.is_true(ok, "simulator exit: " .. tostring(how) .. " " .. tostring(code))
      end)

      it("searches: contact objects typed like the reference's samples", function()
        local bot = H.client(sim, "bot@contoso.com", format)
        local list = call(bot.search, bot, "alice", { limit = 5 })
        assert.equal(1, #list)
        assert.is_false(list.moreResultsAvailable)
        local alice = list[1]
        assert.equal("contact", alice.rel)
        assert.equal("Alice Adams", alice.name)
        assert.equal("sip:alice@contoso.com", alice.uri)
        assert.equal("Sales", alice.department)
        assert.equal("Account Manager", alice.title)
        assert.same({ "alice@contoso.com" }, alice.emailAddresses)
        assert.equal("Alice Adams", alice:display())
        local ref = sample("search_ref.get-" .. format .. "-response.1", format)
        local ref_contact = ref.embedded.contact[1] or ref.embedded.contact
        assert_typed_like(ref_contact.properties, alice.properties, "search contact")
        assert_typed_like(sample("contact_ref.get-" .. format .. "-response.1", format).properties,
          alice.properties, "contact")
        assert.equal(type(ref.properties.moreResultsAvailable), type(list.moreResultsAvailable))
        for rel in pairs(ref_contact.links) do
          if rel ~= "contactPrivacyRelationship" then assert.is_string(alice:link(rel), rel) end
        end
        -- more results than the limit
        local some = call(bot.search, bot, "o", { limit = 1 })
        assert.equal(1, #some)
        assert.is_true(some.moreResultsAvailable)
        -- the same contact object whichever answer names it
        assert.equal(alice, find(call(bot.contacts, bot), "Alice Adams"))
      end)

      it("reads a contact's presence, note, location and modalities, typed like the samples", function()
        local bot = H.client(sim, "bot@contoso.com", format)
        sim:control("POST", "/_sim/users/bob@contoso.com/presence", { availability = "DoNotDisturb" })
        sim:control("POST", "/_sim/users/bob@contoso.com/note", { message = "Heads down today" })
        sim:control("POST", "/_sim/users/bob@contoso.com/location", { location = "By the beach" })
        local bob = call(bot.search, bot, "bob")[1]
        local p = call(bob.presence, bob)
        assert.equal("DoNotDisturb", p.availability)
        local ref = sample("contactPresence_ref.get-" .. format .. "-response.1", format).properties
        for _, k in ipairs{ "availability", "activity", "deviceType", "lastActive" } do
          assert.equal(type(ref[k]), type(p[k]), k)
        end
        local n = call(bob.note, bob)
        assert.same({ message = "Heads down today", type = "Personal" }, n)
        assert.equal("By the beach", (call(bob.location, bob)).location)
        assert.same({ "Messaging" }, (call(bob.supported_modalities, bob)))
        local alice = call(bot.search, bot, "alice")[1]
        assert.same({}, (call(alice.supported_modalities, alice))) -- offline
        assert.same({}, bot.errors)
      end)

      it("gets a contact's photo: the bytes and their content type", function()
        local bot = H.client(sim, "bot@contoso.com", format)
        local alice = call(bot.search, bot, "alice")[1]
        local photo = call(alice.photo, alice)
        assert.matches("^image/bmp", photo.content_type)
        assert.equal("BM", photo.bytes:sub(1, 2))
        assert.equal(#photo.bytes, string.unpack("<I4", photo.bytes, 3))
        assert.equal(16, string.unpack("<i4", photo.bytes, 19)) -- 16 pixels wide
        local bob = call(bot.search, bot, "bob")[1]
        assert.are_not.equal(photo.bytes, (call(bob.photo, bob)).bytes) -- each user's own
      end)

      it("lists the contact list and its groups with their members", function()
        local bot = H.client(sim, "bot@contoso.com", format)
        local groups = call(bot.groups, bot)
        assert.equal(1, #groups)
        local team = groups[1]
        assert.equal("Team", team.name)
        assert.equal("group", team.rel)
        assert.is_string(team.id)
        local members = call(team.members, team)
        local names = {}
        for i, c in ipairs(members) do names[i] = c.name end
        assert.same({ "Alice Adams", "Bob Brown" }, names)
        local contacts = call(bot.contacts, bot)
        assert.equal(2, #contacts)
        assert.equal(members[1], find(contacts, "Alice Adams"))
        -- a group subscription: its members' presence arrives
        local seen
        members[2]:on("presence", function(_, p) seen = p.availability end)
        local sub = call(bot.subscribe, bot, team, { duration = 10 })
        assert.equal("active", sub.state)
        sim:control("POST", "/_sim/users/bob@contoso.com/presence", { availability = "Away" })
        H.wait(function() return seen end, "bob's presence", 10)
        assert.equal("Away", seen)
        -- another user's default contact list: everyone else
        local alice = H.client(sim, "alice@contoso.com", format)
        local colleagues = call(alice.groups, alice)
        assert.equal("Colleagues", colleagues[1].name)
        assert.equal(2, #(call(colleagues[1].members, colleagues[1])))
      end)

      it("checks the search's limits before sending; wrong types raise", function()
        local searches = 0
        local bot = H.client(sim, "bot@contoso.com", format, { log = function(_, m)
          if m:match("^GET %S*/people/search%S*$") then searches = searches + 1 end
        end })
        for _, case in ipairs{ { "", nil }, { ("a"):rep(257), nil }, { "alice", 0 }, { "alice", 101 } } do
          local ok, err = call(bot.search, bot, case[1], { limit = case[2] })
          assert.is_nil(ok)
          assert.equal("ParameterValidationFailure", err.subcode)
        end
        assert.equal(0, searches)
        assert.has_error(function() bot:search(42) end, "bad argument #1 to 'search' (string expected)")
        assert.has_error(function() bot:search("alice", { limit = 1.5 }) end)
        assert.equal(1, #(call(bot.search, bot, "alice", { limit = 100 })))
        assert.equal(1, searches)
      end)
    end)
  end
end)

-- Contact links a hostile server planted to another host or to http://:
-- reading the contact fails with Forbidden, and no token reaches that host.
describe("contact links planted by a hostile server", function()
  local C = require "support.sim_client"
  local cert, key
  C.use_cert(function(c, k) cert, key = c, k end)
  after_each(helpers.close_clients)

  for _, to in ipairs{ "evil.example", "http" } do
    it("a contact in search results pointing to " .. to .. " is refused when read, nothing secret sent", function()
      local sim = helpers.sim{ topology = "pool", cert = cert, key = key }
      finally(function() sim:stop() end)
      local eng = ucwa.engine{ resolve = sim.resolve, ca_file = cert }
      local c = helpers.client(sim, { url = sim.url, engine = eng })
      finally(function() c:close(); eng:close() end)
      local ready = false
      c:on("ready", function() ready = true end)
      c:start()
      helpers.drive(c, function() return ready end, 10, "ready")
      sim:control("POST", "/_sim/plants", { link = "contact", to = to, count = 3 })
      local list, err
      c:search("alice", function(l, e) list, err = l, e or false end)
      helpers.drive(c, function() return list or err end, 5, "search")
      assert.is_truthy(list, tostring(err))
      local alice = list[1]
      assert.matches(to == "http" and "^http://" or "^https://evil%.example", alice.href)
      for _, read in ipairs{ "presence", "note", "photo", "supported_modalities" } do
        local r, e
        alice[read](alice, function(x, y) r, e = x, y or false end)
        helpers.drive(c, function() return r or e end, 5, read)
        assert.is_nil(r, read)
        assert.equal("Forbidden", e.code, read)
        assert.equal(to == "http" and "InsecureLink" or "UntrustedHost", e.subcode, read)
      end
      local hosts = sim:state().hosts
      for name, h in pairs(hosts) do
        assert.equal(0, h.authorization.foreign, name .. " received another host's token")
        assert.equal(0, h.authorization.insecure, name .. " received a token over plain HTTP")
      end
      assert.equal(0, hosts["evil.example"].authorization.count, "evil.example received a token")
      assert.equal(0, hosts["evil.example"].requests, "evil.example was asked anything")
    end)
  end
end)
