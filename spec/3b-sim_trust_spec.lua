-- ucwa-sim for trust specs: what each host received (Authorization headers
-- and whose token each carried, token-service bodies by grant and user, no
-- secret kept), and links planted to point to another host or to http://.
local C = require "support.sim_client"
local cjson = require "cjson"

local ROOT = "/autodiscover/autodiscoverservice.svc/root"
local DEMO1 = "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:DEMO1"

local function esc(s) return (s:gsub("%p", "%%%0")) end

-- The application joins DEMO1 (auto-admitted); returns every event until it is connected.
local function join(s)
  local status = s:post(s.app.embedded.communication.links.joinOnlineMeeting.href, { onlineMeetingUri = DEMO1 })
  assert.equal(201, status)
  local _, seen = s:wait_event(C.is("completed", "onlineMeetingInvitation"))
  return seen
end

describe("ucwa-sim counts the credentials each host receives", function()
  local sim
  C.use_sim_each(function(s) sim = s end, { topology = "pool" })

  it("counts Authorization headers by whose token they carry, and token-service bodies by grant and user", function()
    local s = C.discover(sim, "bot@contoso.com")
    s:pget("timeout=0.1")
    local hs = sim:state().hosts
    local d, p, e = hs["lyncdiscover.contoso.com"], hs["pool2.contoso.com"], hs["evil.example"]
    assert.same({ count = 1, own = 1, foreign = 0, unknown = 0, insecure = 0,
      issuers = { ["lyncdiscover.contoso.com"] = 1 } }, d.authorization)
    assert.equal(1, d.token_service.password)
    assert.same({ ["bot@contoso.com"] = 1 }, d.token_service.usernames)
    assert.same({ count = 2, own = 2, foreign = 0, unknown = 0, insecure = 0,
      issuers = { ["pool2.contoso.com"] = 2 } }, p.authorization)
    assert.equal(1, p.token_service.requests)
    assert.equal(0, e.requests)
    assert.equal(0, e.authorization.count)
    assert.equal(0, e.token_service.requests)
    -- another host's token, something that is no token, another scheme
    local dtok = s.tokens[sim.hosts["lyncdiscover.contoso.com"].url]
    for _, a in ipairs({ "Bearer " .. dtok, "Bearer cwt=nope", "Basic Ym90OnBhc3N3b3Jk" }) do
      assert.equal(401, (C.request("GET", s.base .. s.app.href, { Authorization = a })))
    end
    p = sim:state().hosts["pool2.contoso.com"]
    assert.equal(1, p.authorization.foreign)
    assert.equal(2, p.authorization.unknown)
    assert.equal(1, p.authorization.issuers["lyncdiscover.contoso.com"])
  end)

  it("counts anonymous grants, renewals and refusals", function()
    local d = sim.hosts["lyncdiscover.contoso.com"].url
    local function grant(body)
      return C.request("POST", d .. "/WebTicket/oauthtoken", { ["Content-Type"] = "application/x-www-form-urlencoded" },
        body)
    end
    local anon = "grant_type=urn:microsoft.rtc:anonmeeting&password=DEMO1&ms_rtc_conferenceuri=" .. C.form_encode(DEMO1)
    local _, _, b = grant(anon)
    grant(anon .. "&ms_rtc_renew=" .. C.form_encode(cjson.decode(b).access_token))
    grant("grant_type=password&username=bob@contoso.com&password=wrong")
    local t = sim:state().hosts["lyncdiscover.contoso.com"].token_service
    assert.equal(3, t.requests)
    assert.equal(2, t.anonymous)
    assert.equal(1, t.renew)
    assert.equal(1, t.password)
    assert.equal(1, t.refused)
    assert.same({ [DEMO1] = 2 }, t.conferences)
    assert.same({ ["bob@contoso.com"] = 1 }, t.usernames)
  end)

  it("keeps no password and no token in its state", function()
    assert.equal(201, (sim:control("POST", "/_sim/users",
      { username = "carol@contoso.com", password = "Tr0ub4dor&3" })))
    local s = C.discover(sim, "carol@contoso.com", "json", { password = "Tr0ub4dor&3" })
    local status, _, body = C.request("GET", sim.control_base .. "/_sim/state")
    assert.equal(200, status)
    assert.is_nil(body:find("Tr0ub4dor", 1, true))
    assert.is_nil(body:find(s.token, 1, true))
    assert.is_nil(body:find("cwt=", 1, true))
  end)
end)

describe("ucwa-sim counts credentials sent over plain HTTP", function()
  local sim
  C.use_tls_sim(function(s) sim = s end, { topology = "pool" })

  it("counts a token or a password that reached a plain-HTTP listener as insecure, and answers 302", function()
    local s = C.discover(sim, "bot@contoso.com")
    local pool = sim.hosts["pool2.contoso.com"]
    local status, h = C.request("GET", pool.http_url .. s.app.href, { Authorization = "Bearer " .. s.token })
    assert.equal(302, status)
    assert.equal(pool.url .. s.app.href, h.location)
    local d = sim.hosts["lyncdiscover.contoso.com"]
    status = C.request("POST", d.http_url .. "/WebTicket/oauthtoken",
      { ["Content-Type"] = "application/x-www-form-urlencoded" },
      "grant_type=password&username=bot@contoso.com&password=password")
    assert.equal(302, status)
    local hs = sim:state().hosts
    assert.equal(1, hs["pool2.contoso.com"].authorization.insecure)
    assert.equal(2, hs["pool2.contoso.com"].authorization.own) -- the application's POST, then this one
    assert.equal(1, hs["lyncdiscover.contoso.com"].token_service.insecure)
    assert.equal(2, hs["lyncdiscover.contoso.com"].token_service.password)
  end)

  it("plants a downgrade: the next batch's next link to http:// on the pool's plain-HTTP listener", function()
    local s = C.discover(sim, "bot@contoso.com")
    assert.equal(200, (sim:control("POST", "/_sim/plants", { link = "next", to = "http" })))
    local batch = assert(s:pget("timeout=0.1"))
    local pool = sim.hosts["pool2.contoso.com"]
    assert.matches("^" .. esc(pool.http_url) .. "/ucwa/oauth/v1/applications/%d+/events%?ack=2$", batch.links.next)
  end)
end)

describe("ucwa-sim planted links", function()
  local sim
  C.use_sim_each(function(s) sim = s end, { topology = "pool", auto_admit = true })

  local function plant(t)
    local status, body = sim:control("POST", "/_sim/plants", t)
    assert.equal(200, status, cjson.encode(body))
    return body
  end

  C.each_format(function(fmt)
    it("points the next batch's next link to the hostile host; the batch stays the same when asked again", function()
      local s = C.discover(sim, "bot@contoso.com", fmt)
      local evil = sim.hosts["evil.example"].url
      plant({ link = "next", to = "evil.example", app = s.app.props.id })
      local first = s.events
      local batch, _, body = s:pget("timeout=0.1")
      assert.matches("^" .. esc(evil) .. "/ucwa/oauth/v1/applications/%d+/events%?ack=2$", batch.links.next)
      local again = select(3, s:request("GET", first .. "&timeout=0.1"))
      assert.equal(body, again)
      assert.same({}, sim:state().plants)
      -- following it: the hostile host sees the pool's token and challenges for its own
      local status, h = C.request("GET", batch.links.next, { Authorization = "Bearer " .. s.token })
      assert.equal(401, status)
      assert.matches('MsRtcOAuth href="' .. esc(evil) .. '/WebTicket/oauthtoken"', h["www-authenticate"])
      local e = sim:state().hosts["evil.example"].authorization
      assert.equal(1, e.foreign)
      assert.equal(1, e.issuers["pool2.contoso.com"])
    end)

    it("points a conversation sender, a conversation link and a message link to the hostile host", function()
      local s = C.discover(sim, "bot@contoso.com", fmt)
      local evil = esc(sim.hosts["evil.example"].url)
      local conv_path = "/ucwa/oauth/v1/applications/%d+/communication/conversations/%w+"
      plant({ link = "conversation", to = "evil.example" })
      local conv_event
      for _, e in ipairs(join(s)) do
        if e.type == "added" and e.link.rel == "conversation" then conv_event = conv_event or e end
      end
      assert.matches("^" .. evil .. conv_path .. "$", conv_event.link.href)
      assert.same({}, sim:state().plants)
      -- the next batch with a conversation sender, and the next message event
      plant({ link = "sender", to = "evil.example" })
      plant({ link = "message", to = "evil.example" })
      sim:control("POST", "/_sim/meetings/DEMO1/message", { text = "hi" })
      local sender, message
      for _ = 1, 20 do
        for _, snd in ipairs((s:pget("timeout=0.2")).senders) do
          if snd.rel == "conversation" then
            sender = sender or snd.href
            for _, e in ipairs(snd.events) do
              if e.link.rel == "message" then message = message or e.link.href end
            end
          end
        end
        if message then break end
      end
      assert.matches("^" .. evil .. conv_path .. "$", sender)
      assert.matches("^" .. evil .. conv_path .. "/messaging/messages/%d+$", message)
      assert.same({}, sim:state().plants)
    end)
  end)

  it("points a 401's MsRtcOAuth href, the root's user link, the user resource's applications link elsewhere",
      function()
    local evil = sim.hosts["evil.example"].url
    local d = sim.hosts["lyncdiscover.contoso.com"].url
    plant({ link = "user", to = "evil.example", host = "lyncdiscover.contoso.com" })
    local _, _, rb = C.request("GET", d .. ROOT)
    assert.equal(evil .. ROOT .. "/oauth/user", cjson.decode(rb)._links.user.href)
    _, _, rb = C.request("GET", d .. ROOT)
    assert.equal(d .. ROOT .. "/oauth/user", cjson.decode(rb)._links.user.href) -- used up

    plant({ link = "challenge", to = "evil.example", host = "pool2.contoso.com", count = 2 })
    local pool = sim.hosts["pool2.contoso.com"].url
    for _ = 1, 2 do
      local _, h = C.request("POST", pool .. "/ucwa/oauth/v1/applications", { ["Content-Type"] = "application/json" },
        "{}")
      assert.matches('MsRtcOAuth href="' .. esc(evil) .. '/WebTicket/oauthtoken"', h["www-authenticate"])
    end
    local _, h = C.request("GET", d .. ROOT .. "/oauth/user")
    assert.matches('MsRtcOAuth href="' .. esc(d) .. '/WebTicket/oauthtoken"', h["www-authenticate"])

    plant({ link = "applications", to = "evil.example" })
    local _, _, tb = C.request("POST", d .. "/WebTicket/oauthtoken",
      { ["Content-Type"] = "application/x-www-form-urlencoded" },
      "grant_type=password&username=bot@contoso.com&password=password")
    local _, _, ub = C.request("GET", d .. ROOT .. "/oauth/user",
      { Authorization = "Bearer " .. cjson.decode(tb).access_token })
    assert.equal(evil .. "/ucwa/oauth/v1/applications", cjson.decode(ub)._links.applications.href)
  end)

  it("lists armed plants in the state, clears them, and refuses bad ones", function()
    plant({ link = "next", to = "http", count = 3 })
    plant({ link = "challenge", to = "https://attacker.example:443" })
    local st = sim:state()
    assert.equal(2, #st.plants)
    assert.same({ link = "next", to = "http", count = 3 }, st.plants[1])
    assert.equal(200, (sim:control("POST", "/_sim/plants/clear", {})))
    assert.same({}, sim:state().plants)
    for _, bad in ipairs({ { link = "nope", to = "evil.example" }, { link = "next", to = "nowhere.example" },
      { link = "next", to = "evil.example", count = 0 }, { link = "user", to = "http", host = "nope" } }) do
      assert.equal(400, (sim:control("POST", "/_sim/plants", bad)))
    end
  end)
end)
