-- Autodiscovery: a `redirect` link from the root is followed only when it
-- passes the security check (same domain, or the same host for an address).
local ucwa = require "ucwa"
local simmod = require "ucwa.sim"
local gettime = require("socket").gettime

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

local function sign_in(url, password)
  local c = ucwa.client{ url = url, username = "bot@contoso.com", password = password or "password" }
  local ready, err
  c:on("ready", function() ready = true end)
  c:on("error", function(e) err = e end)
  c:start()
  local deadline = gettime() + 5
  while not (ready or err) and gettime() < deadline do c:step(0.02) end
  return c, ready, err
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
end)
