-- The application kept lean (issue 16): its links held as templates shared
-- by every bot whose application has the same shape, readable as before;
-- `application_model = "full"` keeps the model as the server sent it.
local ucwa = require "ucwa"
local helpers = require "helpers"

local function ready_client(sim, eng, opts)
  local o = { url = sim.url, username = "bot@contoso.com", password = "password", engine = eng }
  for k, v in pairs(opts or {}) do o[k] = v end
  local c = ucwa.client(o)
  local ready = false
  c:on("ready", function() ready = true end)
  c:start()
  helpers.drive(c, function() return ready end, 10, "ready")
  return c
end

-- Every link of a model, "emb/rel" -> href, read through pairs as a bot would.
local function all_links(model)
  local out = {}
  for rel, l in pairs(model.links) do out[rel] = l.href end
  for name, e in pairs(model.embedded) do
    out[name .. "/self"] = e.href
    for rel, l in pairs(e.links) do out[name .. "/" .. rel] = l.href end
  end
  return out
end

for _, format in ipairs{ "json", "xml" } do
  describe("the lean application (" .. format .. ")", function()
    local sim
    setup(function() sim = helpers.sim{} end)
    teardown(function() sim:stop() end)

    it("reads every link as the full model has it", function()
      local eng = ucwa.engine{}
      local lean = ready_client(sim, eng, { format = format })
      local full = ready_client(sim, eng, { format = format, application_model = "full" })
      local app = lean.application
      assert.truthy(app.links.events.href:find("/events", 1, true))
      assert.equal(app.href .. "/people/search", app.embedded.people.links.search.href)
      assert.equal(app.href .. "/me", app.embedded.me.href)
      assert.equal("communication", app.embedded.communication.rel)
      assert.is_nil(app.links.noSuchLink)
      assert.is_nil(app.embedded.noSuchResource)
      -- the same links as the other bot's full model, its id aside
      local want = {}
      for k, href in pairs(all_links(full.application)) do
        want[k] = href:gsub(full.application.href, app.href, 1)
      end
      assert.same(want, all_links(app))
      assert.truthy(next(want))
      -- the full model keeps the embedded resources' properties; the lean one says where to read them
      assert.truthy(next(full.application.embedded.me.properties))
      assert.same({}, app.embedded.me.properties)
      lean:close()
      full:close()
      eng:close()
    end)

    it("costs about a kilobyte a bot (the object and its own properties), not the whole model", function()
      local eng = ucwa.engine{}
      local function heap_per_bot(model, n)
        local bots = {}
        for i = 1, n do bots[i] = ready_client(sim, eng, { format = format, application_model = model,
                                                            available = false }) end
        collectgarbage()
        collectgarbage()
        local before = collectgarbage("count")
        for _, c in ipairs(bots) do c.application, c._session.application = nil, nil end -- white box
        collectgarbage()
        collectgarbage()
        local kb = (before - collectgarbage("count")) / n
        for _, c in ipairs(bots) do c:close() end
        return kb
      end
      local full, lean = heap_per_bot("full", 20), heap_per_bot("lean", 20)
      assert.is_true(lean < 2, ("lean application %.2f KB a bot"):format(lean))
      assert.is_true(full - lean > 4, ("full %.2f KB, lean %.2f KB a bot"):format(full, lean))
      eng:close()
    end)

    it("follows links the bot sets and models it reads again", function()
      local eng = ucwa.engine{}
      local c = ready_client(sim, eng, { format = format })
      local app = c.application
      app.links.mine = { href = "/x/y" } -- a plain table from then on
      assert.equal("/x/y", app.links.mine.href)
      assert.truthy(app.links.events.href)
      local done
      app:refresh(function(_, err) done = err or true end)
      helpers.drive(c, function() return done end, 10, "refresh")
      assert.is_true(done)
      assert.truthy(app.embedded.people.links.search.href)
      -- `me` read again: still found, still lean
      local me
      c:me(function(m, err) me = m or err end)
      helpers.drive(c, function() return me end, 10, "me")
      assert.equal("me", me.rel)
      assert.equal(app.href .. "/me", app.embedded.me.href)
      app.embedded.onlineMeetings = nil
      assert.is_nil(app.embedded.onlineMeetings)
      local names = {}
      for name in pairs(app.embedded) do names[#names + 1] = name end
      table.sort(names)
      assert.same({ "communication", "me", "people" }, names)
      c:close()
      eng:close()
    end)

    it("keeps a model whose links are elsewhere as the server sent it", function()
      local resource = require "ucwa.resource"
      require "ucwa.application"
      local model = { rel = "application", href = "/a/1", properties = {},
        links = { events = { href = "/a/1/events" }, other = { href = "https://elsewhere/x" } },
        embedded = { me = { rel = "me", href = "/a/1/me", links = {} } } }
      local app = resource.new({ options = {} }, model)
      assert.equal(model.links, app.links)
      assert.equal("https://elsewhere/x", app.links.other.href)
    end)
  end)
end
