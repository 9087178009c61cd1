-- ucwa-sim: HTTPS with a given certificate and key (libmicrohttpd TLS), checked
-- by a client that verifies the certificate.
local C = require "support.sim_client"

local function have(cmd)
  return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") == true
end

local function tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  return dir
end

describe("ucwa-sim over HTTPS", function()
  local dir, cert, key
  setup(function()
    dir = tmpdir()
    assert(os.execute("mkdir -p " .. dir))
    cert, key = dir .. "/cert.pem", dir .. "/key.pem"
  end)
  teardown(function()
    os.execute("rm -rf " .. dir)
  end)

  local run = have("openssl") and it or pending
  run("serves the same API over TLS, verifiable with the certificate", function()
    assert(os.execute("env -u LD_PRELOAD openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1"
      .. " -addext subjectAltName=IP:127.0.0.1 -keyout " .. key .. " -out " .. cert .. " >/dev/null 2>&1"))
    local sim = C.start({ cert = cert, key = key })
    finally(function() C.stop(sim) end)
    assert.matches("^https://127%.0%.0%.1:%d+/autodiscover/autodiscoverservice%.svc/root$", sim.url)
    local https = require "ssl.https"
    local ltn12 = require "ltn12"
    local out = {}
    local ok, status = https.request({ url = sim.url, sink = ltn12.sink.table(out),
      verify = "peer", cafile = cert, protocol = "any", options = { "all", "no_sslv2", "no_sslv3" } })
    assert.is_truthy(ok, tostring(status))
    assert.equal(200, status)
    assert.equal("root", require("cjson").decode(table.concat(out)).rel)
    -- a client that does not trust the certificate refuses it
    local bad, err = https.request({ url = sim.url, verify = "peer", cafile = "/dev/null", protocol = "any" })
    assert.is_nil(bad)
    assert.is_string(err)
    -- the token endpoint is announced with https
    local _, st2, h = https.request({ url = sim.base .. "/autodiscover/autodiscoverservice.svc/root/oauth/user",
      verify = "peer", cafile = cert, protocol = "any" })
    assert.equal(401, st2)
    assert.matches('MsRtcOAuth href="https://127%.0%.0%.1:%d+/WebTicket/oauth/token"', h["www-authenticate"])
  end)
end)
