-- Autodiscovery: a `redirect` link from the root is followed only when it
-- passes the security check (same domain, or the same host for an address).
local ucwa = require "ucwa"
local simmod = require "ucwa.sim"
local helpers = require "helpers"

local function start_peer(target)
  local p = assert(io.popen("exec python3 spec/support/redirect_peer.py '" .. target .. "' & echo PID $!"))
  local pid = p:read("l"):match("PID (%d+)")
  local port = p:read("l"):match("PORT (%d+)")
  return { pid = pid, port = port, pipe = p }
end

local function stop_peer(peer)
  os.execute("kill " .. peer.pid .. " 2>/dev/null")
  peer.pipe:close()
end

-- Starts a client and steps it until ready or an error (5 s at most).
local function started(opts)
  local c = ucwa.client(opts)
  local ready, err
  c:on("ready", function() ready = true end)
  c:on("error", function(e) err = e end)
  c:start()
  helpers.drive(c, function() return ready or err end, 5, "ready or an error")
  return c, ready, err
end

local function sign_in(url, password)
  return started{ url = url, username = "bot@contoso.com", password = password or "password" }
end

describe("autodiscovery redirects", function()
  local sim
  setup(function() sim = simmod.start{ step_delay = 0.01 } end)
  teardown(function() sim:stop() end)

  it("follows a redirect to the same host and signs in", function()
    local peer = start_peer(sim.url)
    finally(function() stop_peer(peer) end)
    local c, ready, err = sign_in("http://127.0.0.1:" .. peer.port .. "/autodiscover/autodiscoverservice.svc/root")
    c:close()
    assert.is_nil(err)
    assert.is_true(ready)
  end)

  it("refuses a redirect to another host", function()
    local other = sim.url:gsub("127%.0%.0%.1", "localhost")
    local peer = start_peer(other)
    finally(function() stop_peer(peer) end)
    local c, ready, err = sign_in("http://127.0.0.1:" .. peer.port .. "/root")
    c:close()
    assert.is_nil(ready)
    assert.equal("RedirectRefused", err.subcode)
    assert.matches("another host", err.message)
  end)

  it("reports a refused password once, without the password", function()
    local c, ready, err = sign_in(sim.url, "s3cret-Wrong")
    c:close()
    assert.is_nil(ready)
    assert.equal("Unauthorized", err.code)
    assert.equal("invalid_grant", err.subcode)
    assert.is_nil(tostring(err):find("s3cret", 1, true))
  end)

  it("signs in with a token function, asked again after a 401", function()
    local http, ltn12 = require "socket.http", require "ltn12"
    local function fresh_token()
      local out = {}
      local body = "grant_type=password&username=bot%40contoso.com&password=password"
      http.request{ url = sim.base .. "/WebTicket/oauth/token", method = "POST", sink = ltn12.sink.table(out),
        source = ltn12.source.string(body), headers = { ["content-type"] = "application/x-www-form-urlencoded",
        ["content-length"] = #body } }
      return require("cjson").decode(table.concat(out)).access_token
    end
    local asked = {}
    local c, ready, err = started{ url = sim.url,
      token = function(url) asked[#asked + 1] = url; return fresh_token() end }
    assert.is_nil(err)
    assert.is_true(ready)
    assert.matches("/oauth/user$", asked[1])
    sim:control("POST", "/_sim/tokens/expire", {})
    local done
    c.application:refresh(function(_, e) done = e or true end)
    helpers.drive(c, function() return done end, 5, "the sign-in")
    assert.is_true(done)
    assert.equal(2, #asked)
    c:close()
  end)
end)
