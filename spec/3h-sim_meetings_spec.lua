-- ucwa-sim: scheduled meetings (myOnlineMeetings): schedule, list, PUT with
-- If-Match and the echo property (412 on a stale etag, nothing overwritten),
-- eligible values, delete, and a scheduled meeting joined by another
-- directory user under its accessLevel's lobby rules. JSON and XML.
local C = require "support.sim_client"
local core = require "ucwa.core"
local cjson = require "cjson"

local ECHO = "please pass this in a PUT request"

-- A UCWA input body in `fmt` (arrays as propertyList in XML).
local function input(fmt, t)
  return (core.encode(t, fmt))
end

local function echo_name(m)
  for k, v in pairs(m.props) do if v == ECHO then return k end end
end

describe("ucwa-sim scheduled meetings", function()
  local sim
  C.use_sim(function(s) sim = s end)

  C.each_format(function(fmt)
    local function schedule(s, t)
      local om = s.app.embedded.onlineMeetings
      local href = om.links.myOnlineMeetings.href
      local status, h, body = s:request("POST", href, input(fmt, t))
      return status, h, body
    end

    it("schedules a meeting shaped like the reference sample, with an etag and the echo property", function()
      local s = C.session(sim, "alice@contoso.com", fmt)
      local status, h, body = schedule(s, { subject = "holiday party", description = "a musical",
        attendees = { "sip:carol@contoso.com" }, leaders = {} })
      assert.equal(200, status, body)
      local m = C.model(body, fmt)
      assert.equal("myOnlineMeeting", m.rel)
      assert.equal("holiday party", m.props.subject)
      assert.equal("SameEnterprise", m.props.accessLevel) -- the default value
      assert.matches("^sip:alice@contoso%.com;gruu;opaque=app:conf:focus:id:", m.props.onlineMeetingUri)
      assert.matches("^https://meet%.contoso%.com/alice/", m.props.joinUrl)
      assert.is_string(m.props.onlineMeetingId)
      assert.is_string(echo_name(m))
      assert.equal('"' .. m.props.etag .. '"', h.etag)
      -- the list has it
      local list = s:get(s.app.embedded.onlineMeetings.links.myOnlineMeetings.href)
      local found = false
      for _, x in ipairs(list.embedded.myOnlineMeeting or {}) do
        if x.props.onlineMeetingId == m.props.onlineMeetingId then found = true end
      end
      assert.is_true(found)
    end)

    it("refuses a stale If-Match with 412 and overwrites nothing; a fresh one changes the etag", function()
      local s = C.session(sim, "alice@contoso.com", fmt)
      local _, _, body = schedule(s, { subject = "first" })
      local m = C.model(body, fmt)
      local guid = echo_name(m)
      local function put(etag, t)
        return s:request("PUT", m.href, input(fmt, t), nil, { ["If-Match"] = '"' .. etag .. '"' })
      end
      local st, _, b2 = put(m.props.etag, { subject = "second", [guid] = ECHO })
      assert.equal(200, st, b2)
      local m2 = C.model(b2, fmt)
      assert.equal("second", m2.props.subject)
      assert.are_not.equal(m.props.etag, m2.props.etag)
      -- the old etag is stale now
      local st3, _, b3 = put(m.props.etag, { subject = "third", [guid] = ECHO })
      assert.equal(412, st3)
      assert.equal("PreconditionFailed", C.error_model(b3, fmt).code)
      assert.equal("second", s:get(m.href).props.subject)
      -- no If-Match: 428; no echo property: 400
      assert.equal(428, (s:request("PUT", m.href, input(fmt, { subject = "x", [guid] = ECHO }))))
      local st5, _, b5 = put(m2.props.etag, { subject = "fourth" })
      assert.equal(400, st5)
      assert.equal("ParameterValidationFailure", C.error_model(b5, fmt).subcode)
      assert.equal("second", s:get(m.href).props.subject)
    end)

    it("refuses values outside the eligible values", function()
      local s = C.session(sim, "alice@contoso.com", fmt)
      local base = s.app.embedded.onlineMeetings.href
      local elig = s:get(base .. "/eligibleValues")
      assert.same({ "Everyone", "Invited", "Locked", "SameEnterprise" }, elig.props.accessLevels)
      local defaults = s:get(base .. "/defaultValues")
      assert.equal("SameEnterprise", defaults.props.accessLevel)
      local status, _, body = schedule(s, { subject = "x", accessLevel = "Anyone" })
      assert.equal(400, status)
      assert.equal("ParameterValidationFailure", C.error_model(body, fmt).subcode)
      assert.equal(400, (schedule(s, { subject = ("s"):rep(251) })))
      assert.equal(400, (schedule(s, { subject = "x", attendees = { "carol" } })))
    end)

    it("is joined by another directory user by its URI, with its lobby rules", function()
      local s = C.session(sim, "alice@contoso.com", fmt)
      local _, _, body = schedule(s, { subject = "locked", accessLevel = "Locked" })
      local locked = C.model(body, fmt)
      _, _, body = schedule(s, { subject = "open", accessLevel = "Everyone" })
      local open = C.model(body, fmt)
      _, _, body = schedule(s, { subject = "invited", accessLevel = "Invited",
                                 attendees = { "sip:carol@contoso.com" } })
      local invited = C.model(body, fmt)
      local function join(m, user)
        local st, r = sim:control("POST", "/_sim/meetings/" .. m.props.onlineMeetingId .. "/join", { user = user })
        assert.equal(200, st, cjson.encode(r))
        return r.state
      end
      assert.equal("lobby", join(locked, "carol@contoso.com"))
      assert.equal("in", join(open, "carol@contoso.com"))
      assert.equal("in", join(invited, "carol@contoso.com"))
      assert.equal("lobby", join(invited, "bob@contoso.com"))
      -- a real join by bob's own application, through joinOnlineMeeting
      local c = C.session(sim, "bob@contoso.com", fmt)
      local join_href = c.app.embedded.communication.links.joinOnlineMeeting.href
      local st = c:post(join_href, { onlineMeetingUri = open.props.onlineMeetingUri, operationId = "op-sched-1" })
      assert.equal(201, st)
    end)

    it("deletes a meeting: gone from the list, and nobody can join it", function()
      local s = C.session(sim, "alice@contoso.com", fmt)
      local _, _, body = schedule(s, { subject = "short-lived" })
      local m = C.model(body, fmt)
      assert.equal(204, (s:request("DELETE", m.href)))
      local _, st = s:get(m.href)
      assert.equal(404, st)
      local state = sim:state()
      for _, x in ipairs(state.scheduled_meetings) do assert.are_not.equal(m.props.onlineMeetingId, x.id) end
    end)
  end)
end)
