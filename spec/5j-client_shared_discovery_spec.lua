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
