-- ucwa-sim with a topology: several hosts in one process, each on its own
-- loopback address, answering by name; discovery on one host, the home pool
-- on another, redirects (root, user resource with and without /oauth/user,
-- HTTP to HTTPS, hybrid online), a token service and a challenge per host,
-- tokens good only where they were issued.
local C = require "support.sim_client"
local cjson = require "cjson"
local helpers = require "helpers"

local ROOT = "/autodiscover/autodiscoverservice.svc/root"

-- The trail of a sign-in with the host names and ports made generic.
local function steps(s, sim)
  local out = {}
  for i, step in ipairs(s.trail) do
    local line = step
    for name, h in pairs(sim.hosts) do
      line = line:gsub((h.url:gsub("%p", "%%%0")), name)
      if h.http_url then line = line:gsub((h.http_url:gsub("%p", "%%%0")), "http:" .. name) end
    end
    out[i] = line
  end
  return out
end

describe("ucwa-sim topologies", function()
  it("prints the discovery root by name, then a line per host with its address, then an empty line", function()
    local out = os.tmpname()
    local p = assert(io.popen(helpers.build .. "/ucwa-sim --topology pool > " .. out .. " & echo $!"))
    local pid = p:read("l")
    p:close()
    local text
    for _ = 1, 100 do
      text = helpers.read(out)
      if text:find("\n\n", 1, true) then break end
      os.execute("sleep 0.05")
    end
    os.execute("kill " .. pid)
    os.remove(out)
    local lines = {}
    for l in (text .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = l end
    assert.matches("^http://lyncdiscover%.contoso%.com:%d+" .. ROOT:gsub("%p", "%%%0") .. "$", lines[1])
    assert.matches("^host lyncdiscover%.contoso%.com http://127%.0%.0%.2:%d+$", lines[2])
    assert.matches("^host pool2%.contoso%.com http://127%.0%.0%.3:%d+$", lines[3])
    assert.matches("^host pool3%.contoso%.com http://127%.0%.0%.4:%d+$", lines[4])
    assert.matches("^host evil%.example http://127%.0%.0%.6:%d+$", lines[5])
    assert.equal("", lines[6])
  end)

  it("gives ucwa.sim.start every host's url, address and port, and the resolve list", function()
    local sim = C.start({ topology = "pool" })
    finally(function() C.stop(sim) end)
    local names = {}
    for name in pairs(sim.hosts) do names[#names + 1] = name end
    table.sort(names)
    assert.same({ "evil.example", "lyncdiscover.contoso.com", "pool2.contoso.com", "pool3.contoso.com" }, names)
    local pool = sim.hosts["pool2.contoso.com"]
    assert.equal("127.0.0.3", pool.address)
    assert.equal("http://pool2.contoso.com:" .. pool.port, pool.url)
    assert.equal(sim.hosts["lyncdiscover.contoso.com"].url .. ROOT, sim.url)
    assert.equal(sim.hosts["lyncdiscover.contoso.com"].url, sim.base)
    assert.equal("http://127.0.0.2:" .. sim.hosts["lyncdiscover.contoso.com"].port, sim.control_base)
    local want = {}
    for name, h in pairs(sim.hosts) do want[#want + 1] = name .. ":" .. h.port .. ":" .. h.address end
    table.sort(want)
    local got = { table.unpack(sim.resolve) }
    table.sort(got)
    assert.same(want, got)
    local st = sim:state()
    assert.equal("lyncdiscover.contoso.com", st.discovery)
    assert.equal(pool.url, st.hosts["pool2.contoso.com"].url)
    assert.is_true(st.hosts["evil.example"].hostile)
  end)

  C.each_format(function(fmt)
    describe("pool: the home pool is another host", function()
      local sim
      C.use_sim(function(s) sim = s end, { topology = "pool" })

      it("challenges on the pool with the pool's own token service, and creates the application there", function()
        local s = C.discover(sim, "bot@contoso.com", fmt)
        assert.same({
          "GET lyncdiscover.contoso.com" .. ROOT .. " -> 200",
          "GET lyncdiscover.contoso.com" .. ROOT .. "/oauth/user -> 401",
          "POST lyncdiscover.contoso.com/WebTicket/oauthtoken -> 200",
          "GET lyncdiscover.contoso.com" .. ROOT .. "/oauth/user -> 200",
          "POST pool2.contoso.com/ucwa/oauth/v1/applications -> 401",
          "POST pool2.contoso.com/WebTicket/oauthtoken -> 200",
          "POST pool2.contoso.com/ucwa/oauth/v1/applications -> 201",
        }, steps(s, sim))
        assert.equal(sim.hosts["pool2.contoso.com"].url, s.base)
        -- the application's links are relative, on the pool; its event channel works
        assert.matches("^/ucwa/oauth/v1/applications/%d+/events%?ack=1$", s.events)
        local batch, status = s:pget("timeout=0.1")
        assert.equal(200, status, tostring(batch))
        local st = sim:state()
        assert.equal("pool2.contoso.com", st.applications[#st.applications].host)
      end)

      it("takes a token only on the host whose token service issued it", function()
        local s = C.discover(sim, "bot@contoso.com", fmt)
        local discovery_token = s.tokens[sim.hosts["lyncdiscover.contoso.com"].url]
        local status, h = C.request("GET", s.base .. s.app.href,
          { Accept = C.ACCEPT[fmt], Authorization = "Bearer " .. discovery_token })
        assert.equal(401, status)
        assert.matches('MsRtcOAuth href="' .. sim.hosts["pool2.contoso.com"].url:gsub("%p", "%%%0")
          .. '/WebTicket/oauthtoken"', h["www-authenticate"])
        status = C.request("GET", sim.hosts["lyncdiscover.contoso.com"].url .. ROOT .. "/oauth/user",
          { Accept = C.ACCEPT[fmt], Authorization = "Bearer " .. s.token })
        assert.equal(401, status)
        -- and an application lives on its pool only
        local pool3 = sim.hosts["pool3.contoso.com"].url
        local st, _, tb = C.request("POST", pool3 .. "/WebTicket/oauthtoken",
          { ["Content-Type"] = "application/x-www-form-urlencoded" },
          "grant_type=password&username=bot@contoso.com&password=password")
        assert.equal(200, st)
        local st3, _, body = C.request("GET", pool3 .. s.app.href,
          { Accept = C.ACCEPT[fmt], Authorization = "Bearer " .. cjson.decode(tb).access_token })
        assert.equal(404, st3, body)
      end)
    end)

    for _, case in ipairs({
      { "redirect-user", "redirects the user resource to the pool's .../oauth/user", {
          "GET lyncdiscover.contoso.com" .. ROOT .. " -> 200",
          "GET lyncdiscover.contoso.com" .. ROOT .. "/oauth/user -> 401",
          "POST lyncdiscover.contoso.com/WebTicket/oauthtoken -> 200",
          "GET lyncdiscover.contoso.com" .. ROOT .. "/oauth/user -> 200",
          "GET pool2.contoso.com" .. ROOT .. "/oauth/user -> 401",
          "POST pool2.contoso.com/WebTicket/oauthtoken -> 200",
          "GET pool2.contoso.com" .. ROOT .. "/oauth/user -> 200",
          "POST pool2.contoso.com/ucwa/oauth/v1/applications -> 201" } },
      { "redirect-user-root", "redirects the user resource to the pool's root (no /oauth/user)", {
          "GET lyncdiscover.contoso.com" .. ROOT .. " -> 200",
          "GET lyncdiscover.contoso.com" .. ROOT .. "/oauth/user -> 401",
          "POST lyncdiscover.contoso.com/WebTicket/oauthtoken -> 200",
          "GET lyncdiscover.contoso.com" .. ROOT .. "/oauth/user -> 200",
          "GET pool2.contoso.com" .. ROOT .. " -> 200",
          "GET pool2.contoso.com" .. ROOT .. "/oauth/user -> 401",
          "POST pool2.contoso.com/WebTicket/oauthtoken -> 200",
          "GET pool2.contoso.com" .. ROOT .. "/oauth/user -> 200",
          "POST pool2.contoso.com/ucwa/oauth/v1/applications -> 201" } },
      { "redirect-root", "answers the discovery root with a redirect link to the pool's root", {
          "GET lyncdiscover.contoso.com" .. ROOT .. " -> 200",
          "GET pool2.contoso.com" .. ROOT .. " -> 200",
          "GET pool2.contoso.com" .. ROOT .. "/oauth/user -> 401",
          "POST pool2.contoso.com/WebTicket/oauthtoken -> 200",
          "GET pool2.contoso.com" .. ROOT .. "/oauth/user -> 200",
          "POST pool2.contoso.com/ucwa/oauth/v1/applications -> 201" } },
      { "hybrid", "redirects to webdir.online.lync.com with originalDomain, which carries it on", {
          "GET lyncdiscover.contoso.com" .. ROOT .. " -> 200",
          "GET webdir.online.lync.com" .. ROOT .. "?originalDomain=contoso.com -> 200",
          "GET webdir.online.lync.com" .. ROOT .. "/oauth/user?originalDomain=contoso.com -> 401",
          "POST webdir.online.lync.com/WebTicket/oauthtoken -> 200",
          "GET webdir.online.lync.com" .. ROOT .. "/oauth/user?originalDomain=contoso.com -> 200",
          "POST webdir.online.lync.com/ucwa/oauth/v1/applications -> 201" } },
    }) do
      describe(case[1], function()
        local sim
        C.use_sim(function(s) sim = s end, { topology = case[1] })
        it(case[2], function()
          local s = C.discover(sim, "bot@contoso.com", fmt)
          assert.same(case[3], steps(s, sim))
          local _, status = s:pget("timeout=0.1")
          assert.equal(200, status)
        end)
      end)
    end
  end)

  it("takes a JSON topology (inline or a file): a preset to start from, homes, user modes, max_version", function()
    local sim = C.start({ topology = {
      preset = "pool",
      homes = { ["alice@contoso.com"] = "pool3.contoso.com" },
      hosts = { { name = "pool3.contoso.com", max_version = 3 },
                { name = "lyncdiscover.contoso.com", user = "redirect" } },
    } })
    finally(function() C.stop(sim) end)
    local bob = C.discover(sim, "bob@contoso.com")
    assert.equal(sim.hosts["pool2.contoso.com"].url, bob.base)
    local alice = C.discover(sim, "alice@contoso.com")
    assert.equal(sim.hosts["pool3.contoso.com"].url, alice.base)
    assert.equal(3, sim:state().hosts["pool3.contoso.com"].max_version)
    assert.equal(2, sim:state().hosts["pool2.contoso.com"].max_version)
    -- a guest of alice's meeting is homed on the organizer's pool
    local d = sim.hosts["lyncdiscover.contoso.com"].url
    local uri = "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:DEMO1"
    local _, _, tb = C.request("POST", d .. "/WebTicket/oauthtoken",
      { ["Content-Type"] = "application/x-www-form-urlencoded" },
      "grant_type=urn:microsoft.rtc:anonmeeting&password=DEMO1&ms_rtc_conferenceuri=" .. C.form_encode(uri))
    local _, _, ub = C.request("GET", d .. ROOT .. "/oauth/user",
      { Authorization = "Bearer " .. cjson.decode(tb).access_token })
    assert.equal(sim.hosts["pool3.contoso.com"].url .. ROOT .. "/oauth/user", cjson.decode(ub)._links.redirect.href)

    -- the same from a file, with hosts of its own
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(cjson.encode({ discovery = "a.example.org", pool = "b.example.org", hosts = {
      { name = "a.example.org", address = "127.0.0.7" }, { name = "b.example.org", address = "127.0.0.8" } } }))
    f:close()
    local sim2 = C.start({ topology = path })
    finally(function() C.stop(sim2); os.remove(path) end)
    assert.matches("^http://a%.example%.org:%d+/", sim2.url)
    assert.equal(sim2.hosts["b.example.org"].url, C.discover(sim2, "bot@contoso.com").base)
  end)

  for _, case in ipairs({
    { "nosuchpreset", "no preset 'nosuchpreset'" },
    { '{"hosts":[{"name":"a.example","address":"1.2.3"}]}', "address must be an IPv4 address" },
    { '{"hosts":[{"name":"a.example","address":"127.0.0.2","colour":1}]}', "unknown field 'colour'" },
    { '{"pool":"b.example","hosts":[{"name":"a.example","address":"127.0.0.2"}]}', "pool must name a host" },
    { '{"hosts":[{"name":"a.example","address":"127.0.0.2"},{"name":"A.example","address":"127.0.0.3"}]}',
      "named twice" },
    { '{"hosts":[{"name":"a.example","address":"127.0.0.2","user":"sideways"}]}', "user must be one of" },
    { '{"hosts":[{"name":"a.example","address":"127.0.0.2","root":{"redirect":"nowhere"}}]}', "root redirect" },
  }) do
    it("exits 2 with one line for a bad topology: " .. case[2], function()
      local err = os.tmpname()
      local p = assert(io.popen(helpers.build .. "/ucwa-sim --topology '" .. case[1] .. "' 2>" .. err))
      local out = p:read("a")
      local _, _, code = p:close()
      local msg = helpers.read(err)
      os.remove(err)
      assert.equal(2, code)
      assert.equal("", out)
      assert.matches("^ucwa%-sim: bad value for %-%-topology: [^\n]*" .. case[2]:gsub("%p", "%%%0") .. "[^\n]*\n$",
        msg)
    end)
  end

  it("answers 421 to a Host header naming another host of the topology", function()
    local sim = C.start({ topology = "pool" })
    finally(function() C.stop(sim) end)
    local pool = sim.hosts["pool2.contoso.com"]
    local status = C.request("GET", pool.url .. ROOT, { Host = "lyncdiscover.contoso.com:" .. pool.port })
    assert.equal(421, status)
    assert.equal(200, (C.request("GET", pool.url .. ROOT, { Host = pool.address .. ":" .. pool.port })))
  end)
end)

describe("ucwa-sim topologies over HTTPS", function()
  local cert, sim
  C.use_tls_sim(function(s, c) sim, cert = s, c end, { topology = "pool" })

  -- curl, verifying the certificate by name with --resolve, as a libcurl client would
  local function curl(args)
    local resolve = {}
    for _, r in ipairs(sim.resolve) do resolve[#resolve + 1] = "--resolve " .. r end
    local p = assert(io.popen("env -u LD_PRELOAD curl -s -i --cacert " .. cert .. " " .. table.concat(resolve, " ")
      .. " " .. args .. " 2>&1"))
    local out = p:read("a")
    p:close()
    return out
  end

  it("serves every host over HTTPS by name, with a certificate naming them all", function()
    local d = sim.hosts["lyncdiscover.contoso.com"]
    assert.equal("https://lyncdiscover.contoso.com:" .. d.port, d.url)
    assert.matches("^HTTP/1%.1 200", curl(sim.url))
    local s = C.discover(sim, "bot@contoso.com")
    assert.equal(sim.hosts["pool2.contoso.com"].url, s.base)
  end)

  it("has a plain-HTTP listener per host answering 302 Found, empty body, to the HTTPS URL", function()
    local d = sim.hosts["lyncdiscover.contoso.com"]
    assert.equal("http://lyncdiscover.contoso.com:" .. d.http_port, d.http_url)
    local out = curl(d.http_url .. ROOT .. "?x=1")
    assert.matches("^HTTP/1%.1 302 Found\r\n", out)
    assert.matches("\r\nLocation: " .. (d.url .. ROOT):gsub("%p", "%%%0") .. "%?x=1\r\n", out)
    assert.matches("\r\nContent%-Length: 0\r\n", out)
    -- a client following it ends at the HTTPS root
    local s = C.discover(sim, "bot@contoso.com", "json", { url = d.http_url .. ROOT })
    local trail = steps(s, sim)
    assert.equal("GET http:lyncdiscover.contoso.com" .. ROOT .. " -> 302", trail[1])
    assert.equal("GET lyncdiscover.contoso.com" .. ROOT .. " -> 200", trail[2])
  end)
end)
