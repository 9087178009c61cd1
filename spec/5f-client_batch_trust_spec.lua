-- Batching, scheduling and PUT against a hostile server (ucwa-sim's plants,
-- a topology over HTTPS with evil.example beside the real hosts): a meeting
-- link planted to another host, read or updated inside a batch or alone, is
-- refused and nothing reaches that host; a batch link planted to another
-- host is refused and the reads go one by one to the right host.
local ucwa = require "ucwa"
local helpers = require "helpers"
local C = require "support.sim_client"

local cert, key
C.use_cert(function(c, k) cert, key = c, k end, C.DEPLOYMENT_HOSTS)

local function client(sim, format)
  local eng = ucwa.engine{ resolve = sim.resolve, ca_file = cert }
  local c = helpers.client(sim, { url = sim.url, engine = eng, format = format, username = "alice@contoso.com" })
  c.engine_owned = eng
  return c
end

local steps = require "support.steps"
local ready = steps.ready
local function wait(_, f, what) return steps.wait(f, what) end

-- evil.example received nothing at all; no host got a token not its own.
local function assert_nothing_to_evil(sim)
  local hosts = sim:state().hosts
  for name, h in pairs(hosts) do
    assert.equal(0, h.authorization.foreign, name .. " received another host's token")
    assert.equal(0, h.authorization.insecure, name .. " received a token over plain HTTP")
  end
  assert.equal(0, hosts["evil.example"].requests, "evil.example received a request")
end

for _, format in ipairs{ "json", "xml" } do
  describe("batching and updates with planted links (" .. format .. ")", function()
    local sim
    before_each(function() sim = helpers.sim{ topology = "pool", cert = cert, key = key } end)
    after_each(function()
      for _, c in ipairs(helpers.clients) do pcall(c.close, c); c.engine_owned:close() end
      helpers.clients = {}
      sim:stop()
    end)

    it("refuses a meeting link to another host, in a batch and in a PUT: nothing goes there", function()
      local c = client(sim, format)
      ready(c)
      sim:control("POST", "/_sim/plants", { link = "myOnlineMeeting", to = "evil.example", count = 1 })
      local m = assert(wait(c, function(cb) c:schedule_meeting({ subject = "Planted" }, cb) end, "schedule"))
      assert.matches("^https://evil%.example:", m.href)
      local before = sim:state().batching
      local res = steps.batch_with_planted_meeting(c, m)
      assert.equal("application", res[3][1].rel)
      assert.equal(before.parts + 2, sim:state().batching.parts)
      local _, err = wait(c, function(cb) m:update({ subject = "Stolen" }, cb) end, "update")
      assert.equal("Forbidden", err.code)
      assert_nothing_to_evil(sim)
    end)

    it("refuses a batch link to another host: the reads go one by one, to the right host", function()
      sim:control("POST", "/_sim/plants", { link = "batch", to = "evil.example", count = 100 })
      local c = client(sim, format)
      ready(c) -- sign-in's reads: the batch refused, me read alone
      local res = steps.batch(c, {
        function(cb) c:meetings(cb) end,
        function(cb) c.application:refresh(cb) end,
      })
      assert.equal(0, #res[1][1])
      assert.equal("application", res[2][1].rel)
      local defaults = wait(c, function(cb) c:meeting_defaults(cb) end, "defaults") -- read alone at sign-in
      assert.equal("SameEnterprise", defaults.accessLevel)
      assert.equal(0, sim:state().batching.posts)
      assert_nothing_to_evil(sim)
    end)

    it("refuses a batch link and a meeting link downgraded to plain HTTP: no token goes out in clear", function()
      sim:control("POST", "/_sim/plants", { link = "batch", to = "http", count = 100 })
      local c = client(sim, format)
      ready(c) -- the batch refused (InsecureLink), me read alone over HTTPS
      sim:control("POST", "/_sim/plants", { link = "myOnlineMeeting", to = "http", count = 1 })
      local m = assert(wait(c, function(cb) c:schedule_meeting({ subject = "Downgraded" }, cb) end, "schedule"))
      assert.matches("^http://", m.href)
      local _, err = wait(c, function(cb) m:update({ subject = "Sniffed" }, cb) end, "update")
      assert.equal("Forbidden", err.code)
      assert.equal("InsecureLink", err.subcode)
      assert.equal(0, sim:state().batching.posts)
      assert_nothing_to_evil(sim)
    end)
  end)
end
