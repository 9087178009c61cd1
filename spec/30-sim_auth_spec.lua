-- ucwa-sim: autodiscovery, the OAuth challenge, the token endpoint and token expiry.
local C = require "support.sim_client"
local cjson = require "cjson"

local function form(sim, body)
  local status, h, b = C.request("POST", sim.base .. "/WebTicket/oauth/token",
    { ["Content-Type"] = "application/x-www-form-urlencoded;charset=UTF-8" }, body)
  return status, h, b and cjson.decode(b)
end

describe("ucwa-sim sign-in", function()
  local sim
  C.use_sim(function(s) sim = s end)

  it("prints its root URL and serves it", function()
    assert.matches("^http://127%.0%.0%.1:%d+/autodiscover/autodiscoverservice%.svc/root$", sim.url)
  end)

  C.each_format(function(fmt)
    it("serves the root with user and xframe links (root_ref sample shape)", function()
      local status, h, body = C.request("GET", sim.url, { Accept = C.ACCEPT[fmt] })
      assert.equal(200, status)
      assert.matches(fmt, h["content-type"])
      local root = C.model(body, fmt)
      local sample = C.sample("root_ref.get-" .. fmt .. "-response.1", fmt)
      assert.equal(sample.rel, root.rel)
      assert.equal(sim.url, root.href)
      for _, rel in ipairs({ "user", "xframe" }) do
        assert.is_not_nil(sample.links[rel])
        assert.is_string(root.links[rel].href)
      end
    end)

    it("answers the user resource with the two-challenge 401, then with applications", function()
      local _, _, body = C.request("GET", sim.url, { Accept = C.ACCEPT[fmt] })
      local user_href = C.model(body, fmt).links.user.href
      local status, h = C.request("GET", user_href, { Accept = C.ACCEPT[fmt] })
      assert.equal(401, status)
      assert.equal('Bearer trusted_issuers="", client_id="00000004-0000-0ff1-ce00-000000000000", '
        .. 'MsRtcOAuth href="' .. sim.base .. '/WebTicket/oauth/token",'
        .. 'grant_type="urn:microsoft.rtc:windows,urn:microsoft.rtc:anonmeeting,password"',
        h["www-authenticate"])
      local tok = C.token(sim, "bob@contoso.com")
      local status2, _, ub = C.request("GET", user_href, { Accept = C.ACCEPT[fmt],
        Authorization = "Bearer " .. tok })
      assert.equal(200, status2)
      local u = C.model(ub, fmt)
      assert.equal("user", u.rel)
      assert.equal(sim.base .. "/ucwa/oauth/v1/applications", u.links.applications.href)
      assert.is_not_nil(u.links.xframe)
    end)
  end)

  it("issues password tokens with expires_in and ms_rtc_identityscope", function()
    local status, h, t = form(sim, "grant_type=password&username=alice%40contoso.com&password=password")
    assert.equal(200, status)
    assert.matches("application/json", h["content-type"])
    assert.equal("Bearer", t.token_type)
    assert.matches("^cwt=", t.access_token)
    assert.equal(28800, t.expires_in)
    assert.equal("local", t.ms_rtc_identityscope)
  end)

  it("refuses bad passwords, unknown users, unknown grants and non-form bodies", function()
    local s1, _, t1 = form(sim, "grant_type=password&username=alice@contoso.com&password=nope")
    assert.equal(400, s1)
    assert.equal("invalid_grant", t1.error)
    local s2, _, t2 = form(sim, "grant_type=password&username=mallory@contoso.com&password=password")
    assert.equal(400, s2)
    assert.equal("invalid_grant", t2.error)
    local s3, _, t3 = form(sim, "grant_type=urn:microsoft.rtc:passive")
    assert.equal(400, s3)
    assert.equal("unsupported_grant_type", t3.error)
    local s4, _, b4 = C.request("POST", sim.base .. "/WebTicket/oauth/token",
      { ["Content-Type"] = "application/json" }, '{"grant_type":"password"}')
    assert.equal(400, s4)
    assert.equal("invalid_request", cjson.decode(b4).error)
  end)

  it("issues anonymous meeting tokens for the conference id and renews them", function()
    local uri = "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:DEMO1"
    local enc = uri:gsub("[:;@=]", function(c) return string.format("%%%02X", c:byte()) end)
    local status, _, t = form(sim,
      "grant_type=urn:microsoft.rtc:anonmeeting&password=DEMO1&ms_rtc_conferenceuri=" .. enc)
    assert.equal(200, status)
    assert.equal(3600, t.expires_in)
    assert.equal("anonymous", t.ms_rtc_identityscope)
    local bad = form(sim, "grant_type=urn:microsoft.rtc:anonmeeting&password=WRONG&ms_rtc_conferenceuri=" .. enc)
    assert.equal(400, bad)
    -- renew keeps the same anonymous identity: the user resource points at anonymous applications
    local s2, _, t2 = form(sim, "grant_type=urn:microsoft.rtc:anonmeeting&password=DEMO1&ms_rtc_conferenceuri="
      .. enc .. "&ms_rtc_renew=" .. t.access_token:gsub("=", "%%3D"))
    assert.equal(200, s2)
    assert.are_not.equal(t.access_token, t2.access_token)
    local _, _, ub = C.request("GET", sim.base .. "/autodiscover/autodiscoverservice.svc/root/oauth/user",
      { Authorization = "Bearer " .. t2.access_token })
    assert.equal(sim.base .. "/ucwa/anonymous/v1/applications", cjson.decode(ub)._links.applications.href)
  end)

  it("answers 401 once a token is expired through the control API", function()
    local s = C.session(sim, "bob@contoso.com")
    assert.is_not_nil(s:get(s.app.href))
    local status, r = sim:control("POST", "/_sim/tokens/expire", { token = s.token })
    assert.equal(200, status)
    assert.equal(1, r.expired)
    local app, st = s:get(s.app.href)
    assert.is_nil(app)
    assert.equal(401, st)
  end)
end)

describe("ucwa-sim token lifetime", function()
  it("expires tokens after --token-lifetime", function()
    local sim = C.start({ token_lifetime = 0.3 })
    finally(function() sim:stop() end)
    local tok = C.token(sim, "bot@contoso.com")
    local user = sim.base .. "/autodiscover/autodiscoverservice.svc/root/oauth/user"
    assert.equal(200, (C.request("GET", user, { Authorization = "Bearer " .. tok })))
    require("socket").sleep(0.5)
    local status, h = C.request("GET", user, { Authorization = "Bearer " .. tok })
    assert.equal(401, status)
    assert.matches("MsRtcOAuth", h["www-authenticate"])
  end)
end)

describe("ucwa-sim token form decoding", function()
  it("decodes +, %20 and escaped & in form fields", function()
    local sim = C.start()
    finally(function() sim:stop() end)
    sim:control("POST", "/_sim/users", { username = "sp@contoso.com", password = "a b+c&d" })
    assert.equal(200, (form(sim, "grant_type=password&username=sp%40contoso.com&password=a+b%2Bc%26d")))
    assert.equal(200, (form(sim, "grant_type=password&username=sp@contoso.com&password=a%20b%2bc%26d")))
    assert.equal(400, (form(sim, "grant_type=password&username=sp@contoso.com&password=a+b+c&d")))
  end)
end)

-- Regression: ms_rtc_renew with an expired token and wrong credentials
-- returned a working token.  A renewal carries a grant that succeeds on its
-- own, and a token this service issued to that identity.
describe("ucwa-sim token renewal", function()
  local sim
  C.use_sim_each(function(s) sim = s end, { topology = "pool" })
  local DEMO1 = "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:DEMO1"

  local function at(host, body)
    local status, _, b = C.request("POST", sim.hosts[host].url .. "/WebTicket/oauthtoken",
      { ["Content-Type"] = "application/x-www-form-urlencoded" }, body)
    return status, b and cjson.decode(b)
  end
  local D = "lyncdiscover.contoso.com"
  local ANON = "grant_type=urn:microsoft.rtc:anonmeeting&ms_rtc_conferenceuri=" .. C.form_encode(DEMO1)
  local function renew(tok) return "&ms_rtc_renew=" .. C.form_encode(tok) end

  it("refuses a renewal without a grant, with wrong credentials, or of a token it did not issue", function()
    local _, anon = at(D, ANON .. "&password=DEMO1")
    local _, bot = at(D, "grant_type=password&username=bot@contoso.com&password=password")
    sim:control("POST", "/_sim/tokens/expire", {})
    local cases = {
      { renew(anon.access_token), "invalid_request" },
      { ANON .. "&password=WRONG" .. renew(anon.access_token), "invalid_grant" },
      { "grant_type=password&username=bot@contoso.com&password=nope" .. renew(bot.access_token), "invalid_grant" },
      { "grant_type=password&username=bob@contoso.com&password=password" .. renew(bot.access_token),
        "invalid_grant" },
      { ANON .. "&password=DEMO1" .. renew(bot.access_token), "invalid_grant" },
      { ANON .. "&password=DEMO1" .. renew("cwt=AAEBnope"), "invalid_grant" },
    }
    for _, case in ipairs(cases) do
      local status, t = at(D, case[1])
      assert.equal(400, status, case[1])
      assert.equal(case[2], t.error, case[1])
      assert.is_nil(t.access_token)
    end
    -- a token of another host's service
    local status, t = at("pool2.contoso.com", ANON .. "&password=DEMO1" .. renew(anon.access_token))
    assert.equal(400, status)
    assert.equal("unknown token to renew", t.error_description)
  end)

  it("renews an expired guest token with the conference key: the same guest, the same application", function()
    local _, anon = at("pool2.contoso.com", ANON .. "&password=DEMO1")
    local pool = sim.hosts["pool2.contoso.com"].url
    local status, _, ab = C.request("POST", pool .. "/ucwa/anonymous/v1/applications",
      { Authorization = "Bearer " .. anon.access_token, ["Content-Type"] = "application/json" },
      cjson.encode({ userAgent = "guest/1", culture = "en-US" }))
    assert.equal(201, status)
    local href = cjson.decode(ab)._links.self.href
    sim:control("POST", "/_sim/tokens/expire", {})
    local st, t = at("pool2.contoso.com", ANON .. "&password=DEMO1" .. renew(anon.access_token))
    assert.equal(200, st)
    assert.equal("anonymous", t.ms_rtc_identityscope)
    assert.equal(200, (C.request("GET", pool .. href, { Authorization = "Bearer " .. t.access_token })))
    -- a fresh grant is another guest: not that application's owner
    local _, other = at("pool2.contoso.com", ANON .. "&password=DEMO1")
    assert.equal(403, (C.request("GET", pool .. href, { Authorization = "Bearer " .. other.access_token })))
  end)
end)
