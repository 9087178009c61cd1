-- What the servers tell every bot alike, shared by the clients of one engine
-- (ucwa.shared_discovery, issue 16): the root's answer and each origin's
-- token service. A bot still checks both against its own trust rules, and
-- a shared answer that fails is read again.
local ucwa = require "ucwa"
local helpers = require "helpers"
local shared = require "ucwa.shared_discovery"
local C = require "support.sim_client"

local cert, key
C.use_cert(function(c, k) cert, key = c, k end, C.DEPLOYMENT_HOSTS)

local ready = helpers.start_ready -- true once ready, false on an error not retried

local function requests(sim)
  local _, st = sim:control("GET", "/_sim/state")
  return st.stats.requests
end

describe("discovery shared by the bots of one engine", function()
  after_each(helpers.close_clients)

  it("asks the root and takes a 401 once, not once a bot", function()
    local sim = helpers.sim{}
    finally(function() sim:stop() end)
    local eng = ucwa.engine{}
    local first = helpers.client(sim, { engine = eng, available = false })
    assert.is_true(ready(first))
    local before = requests(sim)
    for _ = 1, 3 do
      assert.is_true(ready(helpers.client(sim, { engine = eng, available = false })))
    end
    -- each: token, user, applications, the P-GET (and one GET of /_sim/state)
    assert.equal(3 * 4 + 1, requests(sim) - before)
    -- a bot on an engine of its own asks for itself
    local other = ucwa.engine{}
    before = requests(sim)
    assert.is_true(ready(helpers.client(sim, { engine = other, available = false })))
    assert.equal(6 + 1, requests(sim) - before)
    helpers.close_clients()
    eng:close()
    other:close()
  end)

  it("sends no password to a token service another bot trusts but this one does not", function()
    local sim = helpers.sim{ topology = "pool", cert = cert, key = key }
    finally(function() sim:stop() end)
    local eng = ucwa.engine{ resolve = sim.resolve, ca_file = cert }
    sim:control("POST", "/_sim/plants", { link = "challenge", to = "evil.example", count = 1 })
    -- this bot trusts evil.example: its password goes there (its choice)
    local trusting = helpers.client(sim, { url = sim.url, engine = eng, trusted_domains = { "evil.example" },
                                           signin_attempts = 1 })
    ready(trusting)
    local evil = sim:state().hosts["evil.example"]
    assert.equal(1, evil.token_service.requests)
    assert.truthy(shared.service(eng, sim.url:match("^https://[^/]+")):find("evil.example", 1, true))
    -- this one does not: the engine's knowledge is no reason to; it asks the origin
    local careful = helpers.client(sim, { url = sim.url, engine = eng, signin_attempts = 1 })
    assert.is_true(ready(careful), tostring(careful.errors[1]))
    evil = sim:state().hosts["evil.example"]
    assert.equal(1, evil.token_service.requests, "the careful bot's password reached evil.example")
    assert.equal(0, evil.authorization.count)
    assert.falsy(shared.service(eng, sim.url:match("^https://[^/]+")):find("evil.example", 1, true))
    helpers.close_clients()
    eng:close()
  end)

  it("never shares a token service over plain HTTP that an HTTPS bot refused", function()
    local sim = helpers.sim{ topology = "pool", cert = cert, key = key }
    finally(function() sim:stop() end)
    local eng = ucwa.engine{ resolve = sim.resolve, ca_file = cert }
    local origin = sim.url:match("^https://[^/]+")
    sim:control("POST", "/_sim/plants", { link = "challenge", to = "http", count = 1 })
    local first = helpers.client(sim, { url = sim.url, engine = eng, signin_attempts = 1 })
    assert.is_false(ready(first))
    assert.equal("UntrustedTokenService", first.errors[#first.errors].subcode)
    assert.is_nil(shared.service(eng, origin))
    local next_bot = helpers.client(sim, { url = sim.url, engine = eng, signin_attempts = 1 })
    assert.is_true(ready(next_bot), tostring(next_bot.errors[1]))
    assert.truthy(shared.service(eng, origin):find("^https://"))
    for name, h in pairs(sim:state().hosts) do
      assert.equal(0, h.token_service.insecure, name .. "'s token service was sent a grant over plain HTTP")
      assert.equal(0, h.authorization.insecure, name .. " received a token over plain HTTP")
    end
    helpers.close_clients()
    eng:close()
  end)

  it("remembers a bounded number of origins and roots an engine", function()
    local eng = {} -- the table only keys on it
    for i = 1, shared.MAX_ENTRIES + 10 do
      shared.set_service(eng, "https://h" .. i, "https://h" .. i .. "/token")
      shared.set_root(eng, "https://h" .. i .. "/root", { links = {} })
    end
    assert.equal("https://h1/token", shared.service(eng, "https://h1"))
    assert.truthy(shared.root(eng, "https://h" .. shared.MAX_ENTRIES .. "/root"))
    assert.is_nil(shared.service(eng, "https://h" .. (shared.MAX_ENTRIES + 1)))
    assert.is_nil(shared.root(eng, "https://h" .. (shared.MAX_ENTRIES + 1) .. "/root"))
    shared.set_service(eng, "https://h1", "https://h1/other") -- a known origin: replaced, not counted again
    assert.equal("https://h1/other", shared.service(eng, "https://h1"))
    shared.set_service(eng, "https://h2", nil) -- forgotten: room for one more
    shared.set_service(eng, "https://new", "https://new/token")
    assert.equal("https://new/token", shared.service(eng, "https://new"))
    shared.set_service(eng, "https://newer", "https://newer/token")
    assert.is_nil(shared.service(eng, "https://newer"))
  end)

  it("asks again when a shared token service or root answer fails", function()
    local sim = helpers.sim{}
    finally(function() sim:stop() end)
    local eng = ucwa.engine{}
    local first = helpers.client(sim, { engine = eng, available = false })
    assert.is_true(ready(first))
    local origin = sim.base
    local real = shared.service(eng, origin)
    assert.truthy(real)
    -- the token service moved (here: a URL of the origin that answers 404)
    shared.set_service(eng, origin, origin .. "/no/token/service")
    local c = helpers.client(sim, { engine = eng, available = false, backoff = { initial = 0.05, max = 0.1 } })
    assert.is_true(ready(c), tostring(c.errors[1]))
    assert.same({}, c.errors)
    assert.equal(real, shared.service(eng, origin))
    -- a root answer whose user link leads nowhere: the retry reads the root again
    shared.set_root(eng, sim.url, { rel = "root", links = { user = { href = "/no/user/here" } } })
    local d = helpers.client(sim, { engine = eng, available = false, backoff = { initial = 0.05, max = 0.1 } })
    assert.is_true(ready(d), tostring(d.errors[1]))
    assert.same({}, d.errors)
    assert.truthy(shared.root(eng, sim.url).links.user.href:find("oauth/user", 1, true))
    helpers.close_clients()
    eng:close()
  end)
end)
