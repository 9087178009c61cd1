-- ucwa-sim faults shaped like real servers' behaviour: diagnostics-coded
-- token failures and IIS pages, error bodies with parameters and debugInfo,
-- a forgotten availability (MakeMeAvailableRequired), an expired application
-- (InactiveApplicationExpired), a pool that is down (502) and comes back
-- elsewhere, a foreign P-GET (PGetReplaced), resource versions
-- (APIVersionNotSupported).
local C = require "support.sim_client"
local cjson = require "cjson"

describe("ucwa-sim token failures as real pools answer them", function()
  local sim, s
  C.use_sim_each(function(x) sim = x end, { topology = "pool" })
  before_each(function() s = C.discover(sim, "bot@contoso.com") end)

  local function arm(kind, t)
    local status, body = sim:control("POST", "/_sim/faults/" .. kind, t or {})
    assert.equal(200, status, cjson.encode(body))
    return body
  end

  it("token-invalid: 403 with X-Ms-diagnostics 28055 and Warning InvalidToken, to requests with a token", function()
    arm("token-invalid", { count = 1 })
    -- requests without a token do not use it up
    assert.equal(200, (C.request("GET", sim.url)))
    local status, h, body = s:request("GET", s.app.href)
    assert.equal(403, status)
    assert.equal('28055;reason="The OAuth token is invalid.";source="pool2.contoso.com"', h["x-ms-diagnostics"])
    assert.equal('299 pool2.contoso.com "InvalidToken"', h.warning)
    assert.matches("^text/html", h["content-type"])
    assert.matches("403", body)
    assert.equal(200, (s:request("GET", s.app.href)))
  end)

  it("ticket-invalid: 500 with IIS's page and X-Ms-diagnostics 28032", function()
    arm("ticket-invalid", { host = "pool2.contoso.com" })
    local status, h, body = s:request("GET", s.app.href)
    assert.equal(500, status)
    assert.equal('28032;reason="The web ticket is invalid.";source="pool2.contoso.com"', h["x-ms-diagnostics"])
    assert.matches("^text/html", h["content-type"])
    assert.matches("500 %- Internal server error", body)
  end)

  it("iis-401: IIS's 401 page with no WWW-Authenticate", function()
    arm("iis-401", { match = "/events" })
    assert.equal(200, (s:request("GET", s.app.href)))
    local status, h, body = s:request("GET", s.events .. "&timeout=0.1")
    assert.equal(401, status)
    assert.is_nil(h["www-authenticate"])
    assert.matches("401 %- Unauthorized", body)
  end)

  it("applies only on the host named, and lists what is armed", function()
    arm("token-invalid", { host = "lyncdiscover.contoso.com", count = 2 })
    local st = sim:state()
    assert.same({ kind = "token-invalid", count = 2, host = "lyncdiscover.contoso.com" }, st.faults.failures[1])
    assert.equal(200, (s:request("GET", s.app.href)))
    assert.equal(404, (sim:control("POST", "/_sim/faults/token-invalid", { host = "nowhere.example" })))
    assert.equal(200, (sim:control("POST", "/_sim/faults/clear", {})))
    assert.same({}, sim:state().faults.failures)
  end)
end)

describe("ucwa-sim error bodies", function()
  local sim
  C.use_sim(function(x) sim = x end)

  C.each_format(function(fmt)
    it("carry parameters, debugInfo and headers given to faults/fail", function()
      local s = C.session(sim, "bot@contoso.com", fmt)
      assert.equal(200, (sim:control("POST", "/_sim/faults/fail", { status = 400, code = "BadRequest",
        subcode = "ParameterValidationFailure", message = "Please check what you entered.",
        parameters = { subject = "too long" }, debugInfo = { diagnostics = "1000;reason=\"x\"", errorReportId = "42" },
        headers = { ["X-Ms-diagnostics"] = '1000;reason="x";source="fe1.contoso.com"' } })))
      local status, h, body = s:request("GET", s.app.href)
      assert.equal(400, status)
      assert.equal('1000;reason="x";source="fe1.contoso.com"', h["x-ms-diagnostics"])
      if fmt == "json" then
        assert.same({ code = "BadRequest", subcode = "ParameterValidationFailure",
          message = "Please check what you entered.", parameters = { subject = "too long" },
          debugInfo = { diagnostics = "1000;reason=\"x\"", errorReportId = "42" } }, cjson.decode(body))
      else
        assert.matches("<subcode>ParameterValidationFailure</subcode><message>Please check what you entered%.</message>"
          .. '<debugInfo><property name="diagnostics">1000;reason=&quot;x&quot;</property>'
          .. '<property name="errorReportId">42</property></debugInfo>'
          .. '<parameters><property name="subject">too long</property></parameters></reason>$', body)
        C.parse_xml(body)
      end
    end)

    it("name the property at fault in a ParameterValidationFailure's parameters", function()
      local s = C.session(sim, "bot@contoso.com", fmt)
      local status, _, body = s:post(s.app.embedded.communication.links.joinOnlineMeeting.href,
        { onlineMeetingUri = "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:DEMO1", subject = ("x"):rep(300) })
      assert.equal(400, status)
      if fmt == "json" then
        assert.same({ subject = "The subject exceeds the maximum length of 250 characters." },
          cjson.decode(body).parameters)
      else
        assert.matches('<parameters><property name="subject">The subject exceeds', body)
      end
    end)
  end)
end)

describe("ucwa-sim application faults", function()
  local sim
  C.use_sim_each(function(x) sim = x end, { topology = "pool" })

  C.each_format(function(fmt)
    it("unavailable: reportMyActivity answers 409 MakeMeAvailableRequired, then makeMeAvailable works again", function()
      local s = C.discover(sim, "bot@contoso.com", fmt)
      local me = s.app.embedded.me
      assert.equal(204, (s:post(me.links.makeMeAvailable.href, {})))
      local report = s.app.href .. "/me/reportMyActivity"
      assert.equal(204, (s:post(report, "")))
      local status, body = sim:control("POST", "/_sim/apps/" .. s.app.props.id .. "/unavailable", {})
      assert.equal(200, status)
      assert.is_true(body.was_available)
      local st, _, eb = s:post(report, "")
      assert.equal(409, st)
      assert.equal("MakeMeAvailableRequired", C.error_model(eb, fmt).subcode)
      local me2 = s:get(s.app.href .. "/me")
      assert.is_table(me2.links.makeMeAvailable)
      assert.is_nil(me2.links.reportMyActivity)
      assert.equal(204, (s:post(me2.links.makeMeAvailable.href, {})))
      assert.equal(204, (s:post(report, "")))
    end)

    it("expire: every later request for the application gets 404 InactiveApplicationExpired", function()
      local s = C.discover(sim, "bot@contoso.com", fmt)
      local sock = s:raw_pget("timeout=5")
      assert.equal(200, (sim:control("POST", "/_sim/apps/" .. s.app.props.id .. "/expire", {})))
      local pst, _, pbody = C.raw_receive(sock)
      sock:close()
      assert.equal(404, pst)
      assert.equal("InactiveApplicationExpired", cjson.decode(pbody).subcode)
      for _, href in ipairs({ s.app.href, s.app.href .. "/me", s.app.href .. "/communication" }) do
        local _, st, body = s:get(href)
        assert.equal(404, st)
        assert.equal("InactiveApplicationExpired", C.error_model(body, fmt).subcode)
      end
      -- a new application is created as usual (a new id)
      local again = C.discover(sim, "bot@contoso.com", fmt)
      assert.are_not.equal(s.app.props.id, again.app.props.id)
    end)
  end)

  it("pget-replaced: the held P-GET gets 409 PGetReplaced as when another client's arrives", function()
    local s = C.discover(sim, "bot@contoso.com")
    local sock = s:raw_pget("timeout=5")
    assert.is_true(C.eventually(function() return sim:state().pgets_held == 1 end))
    local _, body = sim:control("POST", "/_sim/apps/" .. s.app.props.id .. "/pget-replaced", {})
    assert.equal("pending", body.replaced)
    local status, _, rb = C.raw_receive(sock)
    sock:close()
    assert.equal(409, status)
    assert.equal("PGetReplaced", cjson.decode(rb).subcode)
    -- with none held, the next P-GET gets it
    _, body = sim:control("POST", "/_sim/apps/" .. s.app.props.id .. "/pget-replaced", {})
    assert.equal("next", body.replaced)
    local _, st2, b2 = s:pget("timeout=0.1")
    assert.equal(409, st2)
    assert.equal("PGetReplaced", cjson.decode(b2).subcode)
    assert.equal(200, select(2, s:pget("timeout=0.1")))
  end)

  it("pool-down: 502 on the pool's applications resource; with move_to, discovery leads to the other pool", function()
    local s = C.discover(sim, "bot@contoso.com")
    local pool = sim.hosts["pool2.contoso.com"].url
    assert.equal(200, (sim:control("POST", "/_sim/faults/pool-down", { count = 1, move_to = "pool3.contoso.com" })))
    local st = sim:state()
    assert.same({ kind = "pool-down", count = 1, host = "pool2.contoso.com", move_to = "pool3.contoso.com" },
      st.faults.failures[1])
    -- other requests of the pool still work; the applications resource answers 502
    assert.equal(200, (s:request("GET", s.app.href)))
    local status, h, body = s:request("POST", pool .. "/ucwa/oauth/v1/applications",
      cjson.encode({ userAgent = "x", endpointId = "y" }))
    assert.equal(502, status)
    assert.matches("^text/html", h["content-type"])
    assert.matches("502", body)
    -- autodiscovery again: the user is homed on pool3 now
    local again = C.discover(sim, "bot@contoso.com")
    assert.equal(sim.hosts["pool3.contoso.com"].url, again.base)
  end)
end)

describe("ucwa-sim resource versions (X-MS-RequiresMinResourceVersion)", function()
  C.each_format(function(fmt)
    it("refuses a version above the host's with 404 APIVersionNotSupported; per host, and as a fault", function()
      local sim = C.start({ topology = "pool" })
      finally(function() C.stop(sim) end)
      local s = C.discover(sim, "bot@contoso.com", fmt)
      local function get(v)
        return s:request("GET", s.app.href, nil, nil, { ["X-MS-RequiresMinResourceVersion"] = v })
      end
      assert.equal(200, (get("2")))
      assert.equal(200, (get("1.5")))
      local status, _, body = get("2.1")
      assert.equal(404, status)
      local e = C.error_model(body, fmt)
      assert.equal("NotFound", e.code)
      assert.equal("APIVersionNotSupported", e.subcode)
      -- a host that honours less (an older server after a failover)
      local st, info = sim:control("POST", "/_sim/hosts/pool2.contoso.com", { max_version = 1 })
      assert.equal(200, st)
      assert.equal(1, info.max_version)
      assert.equal(404, (get("2")))
      sim:control("POST", "/_sim/hosts/pool2.contoso.com", { max_version = 2 })
      assert.equal(200, (get("2")))
      -- the fault, whatever the header
      sim:control("POST", "/_sim/faults/api-version", { count = 1, match = "/me" })
      assert.equal(200, (get("2")))
      local st2, _, b2 = s:request("GET", s.app.href .. "/me")
      assert.equal(404, st2)
      assert.equal("APIVersionNotSupported", C.error_model(b2, fmt).subcode)
    end)
  end)

  it("takes --max-version for every host", function()
    local sim = C.start({ max_version = 3 })
    finally(function() C.stop(sim) end)
    local s = C.session(sim, "bot@contoso.com")
    assert.equal(200, (s:request("GET", s.app.href, nil, nil, { ["X-MS-RequiresMinResourceVersion"] = "3" })))
    assert.equal(404, (s:request("GET", s.app.href, nil, nil, { ["X-MS-RequiresMinResourceVersion"] = "4" })))
    assert.equal(3, sim:state().hosts["127.0.0.1"].max_version)
    local _, _, rb = C.request("GET", sim.url, { ["X-MS-RequiresMinResourceVersion"] = "4" })
    assert.equal("APIVersionNotSupported", cjson.decode(rb).subcode)
    assert.is_nil(cjson.decode(rb)._links)
  end)
end)
