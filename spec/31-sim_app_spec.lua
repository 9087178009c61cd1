-- ucwa-sim: applications and anonApplications, me/makeMeAvailable/reportMyActivity, expiry.
local C = require "support.sim_client"
local socket = require "socket"

local function keys(t)
  local out = {}
  for k in pairs(t) do out[#out + 1] = k end
  table.sort(out)
  return out
end

describe("ucwa-sim applications", function()
  local sim
  C.use_sim(function(s) sim = s end)

  C.each_format(function(fmt)
    it("creates an application shaped like the reference sample", function()
      local s = C.session(sim, "bob@contoso.com", fmt)
      local app = s.app
      local ref = C.sample("application_ref.get-" .. fmt .. "-response.1", fmt)
      assert.equal("application", app.rel)
      assert.matches("^/ucwa/oauth/v1/applications/%d+$", app.href)
      assert.equal(app.href, s.app_headers["location"])
      for _, p in ipairs({ "culture", "userAgent", "endpointId", "id", "instanceId", "type" }) do
        assert.is_not_nil(ref.props[p])
        assert.is_not_nil(app.props[p], p)
      end
      for _, rel in ipairs({ "batch", "events", "policies" }) do
        assert.is_not_nil(ref.links[rel])
        assert.is_string(app.links[rel].href, rel)
      end
      assert.equal(app.href .. "/events?ack=1", app.links.events.href)
      for _, rel in ipairs({ "me", "people", "communication" }) do
        assert.is_not_nil(ref.embedded[rel])
        assert.equal(rel, app.embedded[rel].rel)
      end
      local comm = app.embedded.communication
      assert.equal(app.href .. "/communication/onlineMeetingInvitations", comm.links.joinOnlineMeeting.href)
      assert.equal(app.href .. "/communication/onlineMeetingInvitations?onlineMeetingUri=adhoc",
        comm.links.startOnlineMeeting.href)
      assert.is_not_nil(comm.links.conversations)
      assert.same({ "Plain", "Html" }, comm.props.supportedMessageFormats)
      local me = app.embedded.me
      assert.equal("sip:bob@contoso.com", me.props.uri)
      assert.is_not_nil(me.links.makeMeAvailable)
      assert.is_nil(me.links.reportMyActivity)
    end)

    it("makeMeAvailable makes reportMyActivity appear; reportMyActivity answers 204", function()
      local s = C.session(sim, "bot@contoso.com", fmt)
      local me_href = s.app.embedded.me.href
      local status = s:post(s.app.embedded.me.links.makeMeAvailable.href,
        { signInAs = "Online", supportedModalities = "Messaging" })
      assert.equal(204, status)
      local me = s:get(me_href)
      assert.is_nil(me.links.makeMeAvailable)
      assert.is_string(me.links.reportMyActivity.href)
      assert.equal(204, (s:post(me.links.reportMyActivity.href, "")))
      local batch = s:pget("timeout=0.2")
      local me_updated = false
      for _, e in ipairs(C.flat(batch)) do
        if e.type == "updated" and e.link.rel == "me" then me_updated = true end
      end
      assert.is_true(me_updated)
    end)

    it("DELETE removes the application: 404 ApplicationNotFound after", function()
      local s = C.session(sim, "bob@contoso.com", fmt)
      local status = s:request("DELETE", s.app.href)
      assert.equal(204, status)
      local _, st, body = s:get(s.app.href)
      assert.equal(404, st)
      local e = C.error_model(body, fmt)
      assert.equal("NotFound", e.code)
      assert.equal("ApplicationNotFound", e.subcode)
    end)

    it("rejects a malformed body with 400 BadRequest and a missing userAgent with ParameterValidationFailure",
      function()
        local s = C.session(sim, "bob@contoso.com", fmt)
        local apps = sim.base .. "/ucwa/oauth/v1/applications"
        local st, _, body = s:request("POST", apps, fmt == "xml" and "<input><property" or "{\"userAgent\":")
        assert.equal(400, st)
        assert.equal("BadRequest", C.error_model(body, fmt).code)
        local st2, _, body2 = s:post(apps, { endpointId = "x", culture = "en-US" })
        assert.equal(400, st2)
        assert.equal("ParameterValidationFailure", C.error_model(body2, fmt).subcode)
      end)
  end)

  it("gives the same application back to the same endpointId", function()
    local a = C.session(sim, "alice@contoso.com", "json", { input = { userAgent = "x", endpointId = "same-ep" } })
    local b = C.session(sim, "alice@contoso.com", "json", { input = { userAgent = "x", endpointId = "same-ep" } })
    assert.equal(a.app.href, b.app.href)
  end)

  it("creates anonymous applications without makeMeAvailable (anonApplications_ref shape)", function()
    local tok = C.anon_token(sim, "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:DEMO1", "DEMO1")
    local s = C.session(sim, nil, "json", { token = tok, input = { userAgent = "guest/1.0", culture = "en-US" } })
    assert.matches("^/ucwa/anonymous/v1/applications/%d+$", s.app.href)
    assert.is_nil(s.app.embedded.me.links.makeMeAvailable)
    assert.is_not_nil(s.app.embedded.communication.links.joinOnlineMeeting)
    assert.same(keys(C.sample("anonApplications_ref.post-json-response.1", "json").links),
      keys(s.app.links)) -- batch, events, policies (+ reportMyNetwork in the sample)
  end)

  it("forgets an application through the control API", function()
    local s = C.session(sim, "bob@contoso.com")
    local id = s.app.props.id
    assert.equal(200, (sim:control("POST", "/_sim/apps/" .. id .. "/forget")))
    local _, st = s:get(s.app.href)
    assert.equal(404, st)
  end)
end)

describe("ucwa-sim application expiry", function()
  it("expires idle applications (--app-idle): 404 InactiveApplicationExpired after", function()
    local sim = C.start({ app_idle = 0.3 })
    finally(function() sim:stop() end)
    local s = C.session(sim, "bob@contoso.com")
    socket.sleep(0.2)
    assert.is_not_nil(s:get(s.app.href)) -- a request keeps it alive
    socket.sleep(0.6)
    local _, st, body = s:get(s.app.href)
    assert.equal(404, st)
    assert.equal("InactiveApplicationExpired", C.error_model(body, "json").subcode)
    local _, state = sim:control("GET", "/_sim/state")
    assert.equal(0, state.application_count)
  end)
end)
