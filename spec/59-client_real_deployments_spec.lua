-- The client against ucwa-sim serving real topologies (several hosts, each on
-- its own loopback address, reached by name through the engine's resolve
-- option, over HTTPS): the home pool on another host, redirects, hybrid,
-- HTTP to HTTPS; and, with links planted to another host and to http://,
-- a count of the Authorization headers and token-service bodies each host
-- received: no token and no password ever reaches a host it was not meant for.
local ucwa = require "ucwa"
local helpers = require "helpers"
local C = require "support.sim_client"

local DEMO1 = helpers.DEMO1
local cert, key
C.use_cert(function(c, k) cert, key = c, k end, C.DEPLOYMENT_HOSTS)

local function start(topology, opts)
  local o = { topology = topology, cert = cert, key = key }
  for k, v in pairs(opts or {}) do o[k] = v end
  return helpers.sim(o)
end

-- A client of the topology: an engine that resolves its names and trusts its
-- certificate, the bot's credentials, errors collected in c.errors.
local function client(sim, format, opts)
  local eng = ucwa.engine{ resolve = sim.resolve, ca_file = cert }
  local o = { url = sim.url, engine = eng, format = format }
  for k, v in pairs(opts or {}) do o[k] = v end
  local c = helpers.client(sim, o)
  c.engine_owned = eng
  return c
end

local ready = helpers.start_ready -- true once ready, false on an error not retried

local function close(c)
  c:close()
  c.engine_owned:close()
end

-- What every host received: nothing secret where it was not meant to go.
local function assert_credentials_kept(sim)
  local hosts = sim:state().hosts
  for name, h in pairs(hosts) do
    assert.equal(0, h.authorization.foreign, name .. " received another host's token")
    assert.equal(0, h.authorization.insecure, name .. " received a token over plain HTTP")
    assert.equal(0, h.token_service.insecure, name .. "'s token service was sent a grant over plain HTTP")
  end
  local evil = hosts["evil.example"]
  assert.equal(0, evil.authorization.count, "evil.example received a token")
  assert.equal(0, evil.token_service.requests, "evil.example received a grant")
  return hosts
end

for _, format in ipairs{ "json", "xml" } do
  describe("real deployments (" .. format .. ")", function()
    after_each(helpers.close_clients)

    -- regression: with the home pool on another host the client renewed at the
    -- first token service and reported 401 Unauthorized
    it("signs in when the home pool is another host, with each host's own token", function()
      local sim = start("pool")
      finally(function() sim:stop() end)
      local c = client(sim, format)
      assert.is_true(ready(c), tostring(c.errors[1]))
      local hosts = assert_credentials_kept(sim)
      local d, p = hosts["lyncdiscover.contoso.com"], hosts["pool2.contoso.com"]
      assert.equal(1, d.token_service.password)
      assert.equal(1, p.token_service.password)
      assert.is_true(p.authorization.own > 0)
      assert.same({ ["pool2.contoso.com"] = p.authorization.own }, p.authorization.issuers)
      -- and the session works there: a meeting joined through the pool
      local inv = c:join_meeting{ onlineMeetingUri = DEMO1 }
      helpers.drive(c, function()
        sim:control("POST", "/_sim/meetings/DEMO1/admit", {})
        return inv:completed()
      end, 10, "the join")
      assert.equal("Success", inv.status)
      close(c)
    end)

    -- regression: a token function was always called with the user URL, never the pool's
    it("calls the token function with the URL of the resource the token is for", function()
      local sim = start("pool")
      finally(function() sim:stop() end)
      local eng = ucwa.engine{ resolve = sim.resolve, ca_file = cert }
      local asked = {}
      local function token_for(url)
        asked[#asked + 1] = url
        local origin = url:match("^(https://[^/]+)")
        local resp = require("support.peer_util").fetch(eng, { method = "POST", url = origin .. "/WebTicket/oauthtoken",
          headers = { ["Content-Type"] = "application/x-www-form-urlencoded" },
          body = "grant_type=password&username=bot@contoso.com&password=password" })
        return require("cjson").decode(resp.body).access_token
      end
      local c = client(sim, format, { token = token_for })
      assert.is_true(ready(c), tostring(c.errors[1]))
      local pool = sim.hosts["pool2.contoso.com"].url:match("^(https://[^/]+)")
      local discovery = sim.hosts["lyncdiscover.contoso.com"].url:match("^(https://[^/]+)")
      local seen = {}
      for _, u in ipairs(asked) do seen[u:match("^(https://[^/]+)")] = true end
      assert.is_true(seen[discovery], "not asked for the discovery host")
      assert.is_true(seen[pool], "not asked for the pool")
      assert_credentials_kept(sim)
      close(c)
      eng:close()
    end)

    -- regression: a redirect in the user resource was followed unchecked, and
    -- one without /oauth/user ended in "user resource has no applications link"
    for _, topology in ipairs{ "redirect-user", "redirect-user-root", "redirect-root" } do
      it("follows a " .. topology .. " redirect through the security check", function()
        local sim = start(topology)
        finally(function() sim:stop() end)
        local c = client(sim, format)
        assert.is_true(ready(c), tostring(c.errors[1]))
        assert_credentials_kept(sim)
        close(c)
      end)
    end

    -- regression: there was no way to allow a hybrid deployment's redirect
    it("refuses a hybrid redirect to online.lync.com unless trusted_domains allows it", function()
      local sim = start("hybrid")
      finally(function() sim:stop() end)
      local c = client(sim, format)
      assert.is_false(ready(c))
      assert.equal("RedirectRefused", c.errors[1].subcode)
      assert.matches("trusted_domains", c.errors[1].message)
      assert.equal(0, sim:state().hosts["webdir.online.lync.com"].requests)
      close(c)
      local c2 = client(sim, format, { trusted_domains = { "online.lync.com" } })
      assert.is_true(ready(c2), tostring(c2.errors[1]))
      assert.equal(1, sim:state().hosts["webdir.online.lync.com"].token_service.password)
      assert_credentials_kept(sim)
      close(c2)
    end)

    -- regression: an HTTP root answering 302 with an empty body crashed the client
    it("follows an HTTP root's 302 to HTTPS, and sends nothing secret over HTTP", function()
      local sim = start("pool")
      finally(function() sim:stop() end)
      local http_root = sim.hosts["lyncdiscover.contoso.com"].http_url
      local c = client(sim, format, { url = http_root })
      assert.is_true(ready(c), tostring(c.errors[1]))
      local hosts = assert_credentials_kept(sim)
      assert.is_true(hosts["lyncdiscover.contoso.com"].requests > 0)
      close(c)
    end)
  end)
end

-- Links planted to another host (evil.example) and to http:// (a downgrade):
-- each fails its request with Forbidden and sends nothing; the hosts' counts
-- prove it.
describe("links planted by a hostile server", function()
  after_each(helpers.close_clients)

  local BEFORE_SIGN_IN = { challenge = "UntrustedTokenService", user = "UntrustedHost", applications = "UntrustedHost" }
  for link, subcode in pairs(BEFORE_SIGN_IN) do
    for _, to in ipairs{ "evil.example", "http" } do
      it("a " .. link .. " link to " .. to .. " is refused and nothing secret is sent", function()
        local sim = start("pool")
        finally(function() sim:stop() end)
        sim:control("POST", "/_sim/plants", { link = link, to = to })
        local c = client(sim, "json")
        assert.is_false(ready(c))
        local e = c.errors[#c.errors]
        assert.equal("Forbidden", e.code)
        assert.equal(to == "http" and (link == "challenge" and "UntrustedTokenService" or "InsecureLink") or subcode,
          e.subcode)
        assert.is_false(e.retrying)
        assert_credentials_kept(sim)
        close(c)
      end)
    end
  end

  for _, to in ipairs{ "evil.example", "http" } do
    it("a next link of the event channel to " .. to .. " stops the channel, reported, not followed", function()
      local sim = start("pool")
      finally(function() sim:stop() end)
      local c = client(sim, "json")
      assert.is_true(ready(c), tostring(c.errors[1]))
      sim:control("POST", "/_sim/plants", { link = "next", to = to })
      sim:control("POST", "/_sim/events", { count = 1 })
      helpers.drive(c, function()
        for _, e in ipairs(c.errors) do if e.subcode == "UntrustedLink" then return true end end
      end, 10, "UntrustedLink reported")
      assert_credentials_kept(sim)
      close(c)
    end)
  end

  -- the objects such a link names: the bot uses them (refresh: a GET of their href)
  local function use_objects(c, messages)
    for _, conv in ipairs(c:conversations()) do conv:refresh(function() end) end
    for _, m in ipairs(messages) do m:refresh(function() end) end
  end

  for _, link in ipairs{ "sender", "conversation", "message" } do
    for _, to in ipairs{ "evil.example", "http" } do
      it("a " .. link .. " link in an event to " .. to .. " is refused when followed, nothing secret sent", function()
        local sim = start("pool", { auto_admit = true })
        finally(function() sim:stop() end)
        local lines = {}
        local c = client(sim, "json", { log = function(_, m) lines[#lines + 1] = m end })
        assert.is_true(ready(c), tostring(c.errors[1]))
        sim:control("POST", "/_sim/plants", { link = link, to = to, count = 5 })
        local inv = c:join_meeting{ onlineMeetingUri = DEMO1 }
        helpers.drive(c, function() return inv:completed() end, 10, "the join")
        local messages = {}
        for _, conv in ipairs(c:conversations()) do
          conv:on("message", function(_, m) messages[#messages + 1] = m end)
        end
        sim:control("POST", "/_sim/meetings/DEMO1/join", { user = "carol@contoso.com", name = "Carol" })
        sim:control("POST", "/_sim/meetings/DEMO1/admit", {})
        sim:control("POST", "/_sim/meetings/DEMO1/message", { from = "carol@contoso.com", text = "hi" })
        local t = helpers.gettime() + 1.5
        helpers.drive(c, function() return helpers.gettime() > t end, 5, "the events")
        use_objects(c, messages)
        t = helpers.gettime() + 0.5
        helpers.drive(c, function() return helpers.gettime() > t end, 5, "the requests")
        assert_credentials_kept(sim)
        -- the planted links did reach the client
        for _, p in ipairs(sim:state().plants) do
          assert.is_true(p.link ~= link or p.count < 5, "no planted " .. link .. " link was sent")
        end
        -- a sender is fetched by its href: refused. (A conversation or message
        -- link comes with its resource embedded: the object keeps the
        -- resource's own href, and the planted link is never requested.)
        if link == "sender" then
          local refused = 0
          for _, l in ipairs(lines) do if l:find(" refused: ", 1, true) then refused = refused + 1 end end
          assert.is_true(refused > 0, "the planted sender was never met:\n" .. table.concat(lines, "\n"))
        end
        close(c)
      end)
    end
  end
end)

-- Real servers' faults, one by one, through the public API.
describe("real-server faults", function()
  local sim, c
  before_each(function()
    sim = start("pool", { auto_admit = true })
  end)
  after_each(function()
    if c then close(c); c = nil end
    helpers.close_clients()
    sim:stop()
  end)

  -- the (one) application: its id as the control API spells it, and its state
  local function app_id()
    local a = sim:state().applications[1]
    return ("%d"):format(a.id), a
  end

  local function join()
    local inv = c:join_meeting{ onlineMeetingUri = DEMO1 }
    helpers.drive(c, function() return inv:completed() end, 10, "the join")
    return inv
  end

  local function grants(host)
    return sim:state().hosts[host].token_service.password
  end

  -- regression: 403 + 28055, 500 + IIS page + 28032 and an IIS 401 page were
  -- reported as "403 Forbidden: HTTP 403" or retried forever
  for _, kind in ipairs{ "token-invalid", "ticket-invalid", "iis-401" } do
    it(kind .. ": the token is renewed once and the request goes through", function()
      c = client(sim, "json")
      assert.is_true(ready(c))
      local before = grants("pool2.contoso.com")
      sim:control("POST", "/_sim/faults/" .. kind, { count = 1, match = "onlineMeetingInvitations" })
      assert.equal("Success", join().status)
      assert.equal(before + 1, grants("pool2.contoso.com"))
    end)

    it(kind .. " again after the renewal: reported once as Unauthorized with the diagnostics", function()
      c = client(sim, "json")
      assert.is_true(ready(c))
      sim:control("POST", "/_sim/faults/" .. kind, { count = 2, match = "onlineMeetingInvitations" })
      local inv = join()
      assert.equal("Failure", inv.status)
      assert.equal("Unauthorized", inv.reason.code)
      if kind ~= "iis-401" then
        assert.equal(kind == "token-invalid" and 28055 or 28032, inv.reason.diagnostics.code)
        assert.matches("invalid", inv.reason.diagnostics.reason)
      end
    end)
  end

  -- regression: 409 MakeMeAvailableRequired on reportMyActivity was reported
  -- every interval and makeMeAvailable was never sent again
  it("sends makeMeAvailable again on MakeMeAvailableRequired", function()
    c = client(sim, "json", { activity_interval = 0.5 })
    assert.is_true(ready(c))
    local id = app_id()
    sim:control("POST", "/_sim/apps/" .. id .. "/unavailable", {})
    helpers.drive(c, function() local _, a = app_id(); return a.available end, 10, "available again")
    for _, e in ipairs(c.errors) do assert.not_equal("MakeMeAvailableRequired", e.subcode) end
  end)

  -- regression: 404 InactiveApplicationExpired on an ordinary request was not recovered
  it("creates the application again on InactiveApplicationExpired from any request", function()
    c = client(sim, "json")
    local resumed
    c:on("resumed", function(info) resumed = info end)
    assert.is_true(ready(c))
    local old = app_id()
    sim:control("POST", "/_sim/apps/" .. old .. "/expire", {})
    join() -- meets the expiry
    helpers.drive(c, function() return resumed ~= nil and c.state == "ready" end, 10, "re-created")
    assert.equal("InactiveApplicationExpired", resumed.reason)
    assert.not_equal(old, app_id())
    assert.equal("Success", join().status)
  end)

  -- regression: re-creation that met 502 on the cached applications URL retried it forever
  it("runs autodiscovery again when the cached applications URL answers 502, and finds the new pool", function()
    c = client(sim, "json")
    local resumed
    c:on("resumed", function(info) resumed = info end)
    assert.is_true(ready(c))
    sim:control("POST", "/_sim/faults/pool-down", { count = 1000, host = "pool2.contoso.com",
                                                   move_to = "pool3.contoso.com" })
    sim:control("POST", "/_sim/apps/" .. app_id() .. "/forget", {})
    helpers.drive(c, function() return resumed ~= nil and c.state == "ready" end, 15, "re-created on pool3")
    local _, a = app_id()
    assert.equal("pool3.contoso.com", a.host)
    assert_credentials_kept(sim)
    assert.equal("Success", join().status)
  end)

  -- regression: a foreign 409 PGetReplaced looped silently forever
  it("reports a foreign PGetReplaced and stops the channel instead of fighting", function()
    c = client(sim, "json")
    assert.is_true(ready(c))
    local id = app_id()
    sim:control("POST", "/_sim/apps/" .. id .. "/pget-replaced", {})
    helpers.drive(c, function()
      for _, e in ipairs(c.errors) do if e.subcode == "PGetReplaced" then return true end end
    end, 10, "PGetReplaced reported")
    local t = helpers.gettime() + 1
    helpers.drive(c, function() return helpers.gettime() > t end, 3, "time")
    local _, a = app_id()
    assert.is_false(a.pget, "the client came back for the channel")
    local n = 0
    for _, e in ipairs(c.errors) do if e.subcode == "PGetReplaced" then n = n + 1 end end
    assert.equal(1, n)
  end)

  -- regression: parameters and debugInfo of error bodies were dropped
  for _, format in ipairs{ "json", "xml" } do
    it("keeps an error body's parameters and debugInfo (" .. format .. ")", function()
      c = client(sim, format)
      assert.is_true(ready(c))
      sim:control("POST", "/_sim/faults/fail", { count = 1, status = 400, code = "BadRequest",
        subcode = "ParameterValidationFailure", match = "onlineMeetingInvitations",
        parameters = { subject = "too long" }, debugInfo = { diagnostics = "2;reason=\"x\"" } })
      local inv = join()
      assert.equal("ParameterValidationFailure", inv.reason.subcode)
      assert.equal("too long", inv.reason.parameters.subject)
      assert.equal('2;reason="x"', inv.reason.debugInfo.diagnostics)
    end)
  end

  -- regression: 404 APIVersionNotSupported was not explained
  it("explains APIVersionNotSupported", function()
    c = client(sim, "json")
    assert.is_true(ready(c))
    sim:control("POST", "/_sim/faults/api-version", { count = 1, match = "onlineMeetingInvitations" })
    local inv = join()
    assert.equal("APIVersionNotSupported", inv.reason.subcode)
    assert.matches("older than Skype for Business Server 2015", inv.reason.message)
  end)
end)

-- regression: after the server came back on another address the bot retried
-- the old one forever; after a bounded time of failing P-GETs it runs
-- autodiscovery again
describe("a pool that stops answering the event channel", function()
  it("sends the session back to autodiscovery, which finds the new pool", function()
    local session = require "ucwa.session"
    local saved = session.CHANNEL_REDISCOVER_AFTER
    session.CHANNEL_REDISCOVER_AFTER = 2
    local sim = start("pool")
    finally(function() session.CHANNEL_REDISCOVER_AFTER = saved; sim:stop() end)
    local c = client(sim, "json", { backoff = { initial = 0.2, max = 0.5 } })
    assert.is_true(ready(c))
    sim:control("POST", "/_sim/faults/fail", { count = 100000, status = 503, match = "/events",
                                               host = "pool2.contoso.com" })
    sim:control("POST", "/_sim/faults/pool-down", { count = 100000, host = "pool2.contoso.com",
                                                   move_to = "pool3.contoso.com" })
    helpers.drive(c, function()
      local a = sim:state().applications
      return a[#a].host == "pool3.contoso.com" and c.state == "ready" and a[#a].pget
    end, 20, "the session on pool3")
    close(c)
  end)
end)
