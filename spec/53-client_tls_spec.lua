-- The client over HTTPS: TLS is verified by default; ca_file makes a
-- self-signed simulator trusted.
local ucwa = require "ucwa"
local simmod = require "ucwa.sim"
local E = require "support.client_env"
local drive = require("helpers").drive

local function have(cmd)
  return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true
end

describe("client over HTTPS", function()
  local dir, cert, key, sim
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    cert, key = dir .. "/cert.pem", dir .. "/key.pem"
    assert(os.execute("env -u LD_PRELOAD openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1"
      .. " -addext subjectAltName=IP:127.0.0.1 -keyout " .. key .. " -out " .. cert .. " >/dev/null 2>&1"))
    sim = simmod.start{ cert = cert, key = key, step_delay = 0.01 }
  end)
  teardown(function()
    if sim then sim:stop() end
    os.execute("rm -rf " .. dir)
  end)

  local run = have("openssl") and it or pending

  run("refuses the self-signed certificate by default, and says why", function()
    local c = ucwa.client{ url = sim.url, username = "bot@contoso.com", password = "password" }
    local err, ready
    c:on("error", function(e) err = e end)
    c:on("ready", function() ready = true end)
    c:start()
    drive(c, function() return err or ready end, 5, "an error or ready")
    c:close()
    assert.is_nil(ready)
    assert.equal("TlsError", err.code)
    assert.is_nil(tostring(err):find("password", 1, true))
  end)

  run("signs in and joins with ca_file", function()
    local c = ucwa.client{ url = sim.url, username = "bot@contoso.com", password = "password", ca_file = cert }
    local ready
    c:on("ready", function() ready = true end)
    c:on("error", function(e) error(tostring(e)) end)
    c:start()
    drive(c, function() return ready end, 5, "ready")
    local inv = c:join_meeting{ onlineMeetingUri = E.MEETING }
    E.admit_until_complete(c, sim, inv)
    assert.equal("Success", inv.status)
    c:close()
  end)

  run("works with verify = false when asked explicitly", function()
    local c = ucwa.client{ url = sim.url, username = "bot@contoso.com", password = "password", verify = false }
    local ready
    c:on("ready", function() ready = true end)
    c:start()
    drive(c, function() return ready end, 5, "ready")
    c:close()
  end)
end)
