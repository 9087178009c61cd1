-- ucwa.parse / parse_events / parse_error: the resource model, on the
-- onlineMeetingInvitation samples of the reference and hand-made bodies.
local helpers = require "helpers"
local fixtures = require "support.fixtures"
local ucwa = require "ucwa"
local core = require "ucwa.core"

local samples = fixtures.samples
local json_body, xml_body, events_body = fixtures.invitation()

describe("ucwa.parse", function()
  for _, case in ipairs{
    { "JSON", json_body, "application/json", "Connected" },
    { "XML", xml_body, "application/xml", "Connecting" },
  } do
    local name, body, ct, state = case[1], case[2], case[3], case[4]

    describe("of the onlineMeetingInvitation " .. name .. " sample", function()
      local m = assert(ucwa.parse(body, ct))

      it("gives rel, the self href and typed properties", function()
        assert.equal("onlineMeetingInvitation", m.rel)
        assert.equal("/ucwa/v1/applications/192/communication/invitations/711", m.href)
        local p = m.properties
        assert.equal(state, p.state)
        assert.equal("Strategy for next quarter", p.subject)
        assert.equal("Incoming", p.direction)
        assert.equal("Cathy Arnold", p.anonymousDisplayName)
        assert.equal("74cb7404e0a247d5a2d4eb0376a47dbf", p.operationId)
        assert.same({ "Messaging", "Audio", "ApplicationSharing" }, p.availableModalities)
        assert.is_nil(p.rel)
        assert.is_nil(p._links)
        assert.is_nil(p._embedded)
      end)

      it("gives links by rel, without self", function()
        local l = m.links
        assert.same({ href = "/ucwa/v1/applications/192/communication/conversations/137" }, l.conversation)
        assert.same({ href = "/ucwa/v1/applications/192/communication/invitations/665/cancel" }, l.cancel)
        assert.equal("/ucwa/v1/applications/192/communication/invitations/665/accept", l.accept.href)
        assert.equal("data:text/plain;base64,somebase64encodedmessage", l.message.href)
        assert.is_nil(l.self)
        local n = 0
        for _ in pairs(l) do n = n + 1 end
        assert.equal(9, n)
      end)

      it("gives embedded resources, typed, with collections as arrays", function()
        local from = m.embedded.from
        assert.equal("participant", from.rel)
        assert.equal("/ucwa/v1/applications/192/communication/conversations/137/participants/196", from.href)
        assert.is_true(from.properties.anonymous)
        assert.is_true(from.properties.inLobby)
        assert.is_true(from.properties.organizer)
        assert.equal("Joe Smith", from.properties.name)
        assert.equal("tel:+14251111111", from.properties.workPhoneNumber)
        assert.equal("/ucwa/v1/applications/192/people/282", from.links.contact.href)
        -- startEmergencyCallInput is a collection: an array even with one item
        local sec = m.embedded.startEmergencyCallInput
        assert.equal(1, #sec)
        assert.equal("startEmergencyCallParameters", sec[1].rel)
        assert.same({}, sec[1].properties)
      end)
    end)
  end

  it("gives the same model from both formats, but for the state the samples disagree on", function()
    local j = assert(ucwa.parse(json_body, "application/json"))
    local x = assert(ucwa.parse(xml_body, "application/xml"))
    j.properties.state, x.properties.state = nil, nil
    assert.same(j, x)
  end)

  it("accepts the UCWA content types, parameters and a missing content type", function()
    for _, ct in ipairs{ "application/json", "application/json; charset=utf-8",
      "application/vnd.microsoft.com.ucwa+json", "Application/JSON;charset=UTF-8", " application/json " } do
      local m = assert(ucwa.parse(json_body, ct), ct)
      assert.equal("onlineMeetingInvitation", m.rel)
    end
    for _, ct in ipairs{ "application/xml", "application/xml; charset=utf-8",
      "application/vnd.microsoft.com.ucwa+xml", "text/xml" } do
      local m = assert(ucwa.parse(xml_body, ct), ct)
      assert.equal("onlineMeetingInvitation", m.rel)
    end
    assert.equal("onlineMeetingInvitation", ucwa.parse(json_body).rel)
    assert.equal("onlineMeetingInvitation", ucwa.parse(xml_body).rel)
  end)

  it("accepts a leading UTF-8 BOM in both formats", function()
    local bom = "\239\187\191"
    assert.same(ucwa.parse(json_body, "application/json"), ucwa.parse(bom .. json_body, "application/json"))
    assert.same(ucwa.parse(xml_body, "application/xml"), ucwa.parse(bom .. xml_body, "application/xml"))
  end)

  it("keeps /Date(ms)/ values as given", function()
    local m = assert(ucwa.parse('{"rel":"message","timeStamp":"\\/Date(1326337402743)\\/"}', "application/json"))
    assert.equal("/Date(1326337402743)/", m.properties.timeStamp)
    assert.equal(1326337402.743, ucwa.date(m.properties.timeStamp))
  end)

  it("types numbers as integers when they are whole, in both formats", function()
    local j = assert(ucwa.parse('{"rel":"callForwardingSettings","ringDelay":5,"x":1.5,"n":null}', "application/json"))
    assert.equal("integer", math.type(j.properties.ringDelay))
    assert.equal(1.5, j.properties.x)
    assert.is_nil(j.properties.n)
    local x = assert(ucwa.parse([[<resource rel="unansweredCallSettings" href="/u">
      <property name="ringDelay">5</property><property name="n" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
      xsi:nil="true"/></resource>]], "application/xml"))
    assert.equal(5, x.properties.ringDelay)
    assert.equal("integer", math.type(x.properties.ringDelay))
    assert.is_nil(x.properties.n)
  end)

  it("keeps numeric-looking strings as strings when the schema says so", function()
    local x = assert(ucwa.parse([[<resource rel="onlineMeeting" href="/m">
      <property name="conferenceId">12345</property><property name="unknownFlag">False</property>
      <property name="unknownNumber">42</property></resource>]], "application/xml"))
    assert.equal("12345", x.properties.conferenceId)
    -- not in the schema: True/False still become booleans, numbers stay text
    assert.is_false(x.properties.unknownFlag)
    assert.equal("42", x.properties.unknownNumber)
  end)

  it("makes repeated XML links and embedded resources arrays", function()
    local x = assert(ucwa.parse([[<resource rel="thing" href="/t">
      <link rel="a" href="/a1"/><link rel="a" href="/a2" title="Two"/><link rel="a" href="/a3"/>
      <link rel="b" href="/b" revision="2"/>
      <resource rel="r" href="/r1"><property name="rel">x</property></resource>
      <resource rel="r" href="/r2"><property name="rel">x</property></resource></resource>]], "application/xml"))
    assert.same({ { href = "/a1" }, { href = "/a2", title = "Two" }, { href = "/a3" } }, x.links.a)
    assert.same({ href = "/b", revision = "2" }, x.links.b)
    assert.equal(2, #x.embedded.r)
    assert.equal("/r2", x.embedded.r[2].href)
    assert.equal("x", x.embedded.r[1].rel)
  end)

  it("shapes schema collections the same from a single JSON object", function()
    local j = assert(ucwa.parse([[{"rel":"lobby","_embedded":{"participant":{"rel":"participant",
      "_links":{"self":{"href":"/p/1"}}}},"_links":{"self":{"href":"/lobby"}}}]], "application/json"))
    assert.equal(1, #j.embedded.participant)
    assert.equal("/p/1", j.embedded.participant[1].href)
    local x = assert(ucwa.parse([[<resource rel="lobby" href="/lobby">
      <resource rel="participant" href="/p/1"><property name="rel">participant</property></resource>
      </resource>]], "application/xml"))
    assert.same(j, x)
  end)

  it("turns a non-resource XML root into properties, lists from the schema", function()
    local x = assert(ucwa.parse(helpers.read(samples .. "anonApplications_ref.options-xml-response.1.xml"),
      "application/xml"))
    local j = assert(ucwa.parse(helpers.read(samples .. "anonApplications_ref.options-json-response.1.json"),
      "application/json"))
    assert.same(j, x)
    assert.equal("samplevalue", x.properties.metadata[1].parameters[1].supportedValues[1])
  end)
end)

describe("ucwa.parse_events", function()
  -- Parses a batch whose links are self and next under `base` and whose first
  -- sender is communication; returns it.
  local function batch(body, ct, base, nsenders)
    local b = assert(ucwa.parse_events(body, ct))
    assert.equal(base .. "/events?ack=2", b.links.next.href)
    assert.equal(base .. "/events?ack=1", b.links.self.href)
    assert.equal(nsenders, #b.senders)
    assert.equal("communication", b.senders[1].rel)
    return b
  end

  it("gives links, senders and typed events from a JSON batch", function()
    local b = batch(events_body, "application/json", "http://sample:80/ucwa/v1/applications/appId", 1)
    local s = b.senders[1]
    assert.equal("https://fe1.contoso.com:443/ucwa/v1/applications/192/communication", s.href)
    assert.equal(1, #s.events)
    assert.equal("started", s.events[1].type)
    assert.equal("onlineMeetingInvitation", s.events[1].link.rel)
    assert.is_nil(s.events[1].resource)
  end)

  local completed_json = [[{
    "_links":{"self":{"href":"/events?ack=3"},"next":{"href":"/events?ack=4"}},
    "sender":[{"rel":"communication","href":"/app/communication","events":[
      {"link":{"rel":"onlineMeetingInvitation","href":"/app/inv/7"},
       "_embedded":{"onlineMeetingInvitation":{"rel":"onlineMeetingInvitation","state":"Failed",
          "availableModalities":["Audio"],"_links":{"self":{"href":"/app/inv/7"},
          "conversation":{"href":"/app/conv/1"}}}},
       "status":"Failure",
       "reason":{"code":"Forbidden","subcode":"SomethingNew","message":"Rejected from the lobby"},
       "type":"completed"},
      {"link":{"rel":"participant","href":"/app/conv/1/p/2"},"in":{"rel":"lobby","href":"/app/conv/1/lobby"},
       "type":"added"}]}]}]]

  local completed_xml = [[<?xml version="1.0" encoding="utf-8"?>
<events href="/events?ack=3" xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa">
  <link rel="next" href="/events?ack=4" />
  <sender rel="communication" href="/app/communication">
    <completed rel="onlineMeetingInvitation" href="/app/inv/7">
      <status>Failure</status>
      <reason><code>Forbidden</code><subcode>SomethingNew</subcode><message>Rejected from the lobby</message></reason>
      <resource rel="onlineMeetingInvitation" href="/app/inv/7">
        <link rel="conversation" href="/app/conv/1" />
        <property name="rel">onlineMeetingInvitation</property>
        <property name="state">Failed</property>
        <propertyList name="availableModalities"><item>Audio</item></propertyList>
      </resource>
    </completed>
    <added rel="participant" href="/app/conv/1/p/2"><in rel="lobby" href="/app/conv/1/lobby" /></added>
  </sender>
</events>]]

  for _, case in ipairs{ { "JSON", completed_json, "application/json" },
    { "XML", completed_xml, "application/xml" } } do
    it("reads status and reason from the event, the resource from its embedded one (" .. case[1] .. ")", function()
      local b = assert(ucwa.parse_events(case[2], case[3]))
      assert.equal("/events?ack=4", b.links.next.href)
      local ev = b.senders[1].events
      assert.equal(2, #ev)
      assert.equal("completed", ev[1].type)
      assert.equal("Failure", ev[1].status)
      assert.equal("Forbidden", ev[1].reason.code)
      assert.equal("SomethingNew", ev[1].reason.subcode)
      assert.equal("Forbidden/SomethingNew: Rejected from the lobby", tostring(ev[1].reason))
      assert.same({ rel = "onlineMeetingInvitation", href = "/app/inv/7" }, ev[1].link)
      local r = ev[1].resource
      assert.equal("onlineMeetingInvitation", r.rel)
      assert.equal("/app/inv/7", r.href)
      assert.equal("Failed", r.properties.state)
      assert.is_nil(r.properties.status)
      assert.same({ "Audio" }, r.properties.availableModalities)
      assert.equal("/app/conv/1", r.links.conversation.href)
      assert.equal("added", ev[2].type)
      assert.same({ rel = "lobby", href = "/app/conv/1/lobby" }, ev[2]["in"])
    end)
  end

  it("gives the same batch from both formats", function()
    assert.same(ucwa.parse_events(completed_json, "application/json"),
      ucwa.parse_events(completed_xml, "application/xml"))
  end)

  it("reads the XML sample of EventChannelDetails.md", function()
    local doc = helpers.read(helpers.pages .. "/EventChannelDetails.md")
    local body = assert(doc:match("(<%?xml[^\n]*\n<events.-</events>)"))
    local b = batch(body, "application/xml", "/ucwa/oauth/v1/applications/102", 2)
    local comm = b.senders[1]
    local up = comm.events[1]
    assert.equal("updated", up.type)
    assert.equal("communication", up.link.rel)
    assert.equal("communication", up.resource.rel)
    assert.same({ "Messaging" }, up.resource.properties.supportedModalities)
    assert.equal("please pass this in a PUT request", up.resource.properties["56de7bbf-1081-43e6-bbf2-1cabf3224c83"])
    assert.equal("/ucwa/oauth/v1/applications/102/communication/onlineMeetingInvitations",
      up.resource.links.joinOnlineMeeting.href)
    local me = b.senders[2]
    assert.equal(4, #me.events)
    assert.same({ "updated", "added", "added", "added" },
      { me.events[1].type, me.events[2].type, me.events[3].type, me.events[4].type })
    assert.equal("note", me.events[3].link.rel)
  end)

  it("gives an empty batch for a timeout response that carries only next", function()
    local b = assert(ucwa.parse_events('{"_links":{"next":{"href":"/e?ack=9"}}}', "application/json"))
    assert.same({ links = { next = { href = "/e?ack=9" } }, senders = {} }, b)
    local x = assert(ucwa.parse_events('<events><link rel="next" href="/e?ack=9"/></events>', "application/xml"))
    assert.same(b, x)
    local r = assert(ucwa.parse_events('{"_links":{"resync":{"href":"/e?ack=2"}}}', "application/json"))
    assert.equal("/e?ack=2", r.links.resync.href)
  end)
end)

describe("ucwa.parse_error", function()
  it("reads a JSON error body", function()
    local e = ucwa.parse_error('{"code":"NotFound","subcode":"ApplicationNotFound","message":"Gone away."}',
      "application/json; charset=utf-8", 404)
    assert.equal(404, e.status)
    assert.equal("NotFound", e.code)
    assert.equal("ApplicationNotFound", e.subcode)
    assert.equal("Gone away.", e.message)
    assert.equal("404 NotFound/ApplicationNotFound: Gone away.", tostring(e))
    assert.equal(core.error_mt, getmetatable(e))
  end)

  it("reads the XML error body of ErrorsAndInformationalMessages.md", function()
    local doc = helpers.read(helpers.pages .. "/ErrorsAndInformationalMessages.md")
    local body = assert(doc:match("(<%?xml[^\n]*\n<reason.-</reason>)"))
    local e = ucwa.parse_error(body, "application/xml", 409)
    assert.equal("Conflict", e.code)
    assert.equal("AlreadyExists", e.subcode)
    assert.equal("The requested resource already exists. Please wait and try again.", e.message)
    assert.equal(409, e.status)
  end)

  it("keeps parameters and debugInfo (ErrorsAndInformationalMessages.md: property bags) in both formats", function()
    local j = ucwa.parse_error('{"code":"BadRequest","message":"m","parameters":{"to":"sip:x","ttl":30,'
      .. '"nested":{"a":1},"gone":null},"debugInfo":[{"name":"diagnostics","value":"28032;reason=x"},'
      .. '{"name":"errorReportId","value":"abc"},{"value":"no name"},"loose"]}', "application/json", 400)
    assert.same({ to = "sip:x", ttl = 30 }, j.parameters)
    assert.same({ diagnostics = "28032;reason=x", errorReportId = "abc" }, j.debugInfo)
    assert.equal("400 BadRequest: m", tostring(j))
    local x = ucwa.parse_error([[<reason xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa"
      xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><code>BadRequest</code><message>m</message>
      <debugInfo><property name="diagnostics">28032;reason=x</property><property name="errorReportId">abc</property>
      <property>no name</property><property name="n" xsi:nil="true"/></debugInfo>
      <parameters><property name="to">sip:x</property><property name="ttl">30</property></parameters></reason>]],
      "application/xml", 400)
    assert.same({ to = "sip:x", ttl = "30" }, x.parameters)
    assert.same(j.debugInfo, x.debugInfo)
    assert.equal("BadRequest", x.code)
    assert.equal("m", x.message)
    -- the docs' sample: both present and empty
    local doc = helpers.read(helpers.pages .. "/ErrorsAndInformationalMessages.md")
    local e = ucwa.parse_error(assert(doc:match("(<%?xml[^\n]*\n<reason.-</reason>)")), "application/xml", 409)
    assert.same({}, e.debugInfo)
    assert.same({}, e.parameters)
    local empty = ucwa.parse_error('{"code":"Conflict","debugInfo":{},"parameters":[]}', "application/json", 409)
    assert.same({}, empty.debugInfo)
    assert.same({}, empty.parameters)
    -- absent, or not a bag: no field
    local none = ucwa.parse_error('{"code":"Conflict","debugInfo":"text"}', "application/json", 409)
    assert.is_nil(none.debugInfo)
    assert.is_nil(none.parameters)
    assert.is_nil(ucwa.parse_error("", "application/json", 500).debugInfo)
  end)

  it("bounds the bags: 64 entries, names of 256 bytes, values cut to 4096 bytes on a character", function()
    local parts, props = {}, {}
    for i = 1, 100 do
      parts[#parts + 1] = ('"k%d":"v"'):format(i)
      props[#props + 1] = ('<property name="k%d">v</property>'):format(i)
    end
    local long = ("é"):rep(3000) -- 6000 bytes
    local name = ("n"):rep(257)
    local j = ucwa.parse_error('{"code":"BadRequest","debugInfo":{' .. table.concat(parts, ",") .. '},'
      .. '"parameters":{"long":"' .. long .. '","' .. name .. '":"x"}}', "application/json", 400)
    local x = ucwa.parse_error('<reason><code>BadRequest</code><debugInfo>' .. table.concat(props)
      .. '</debugInfo><parameters><property name="long">' .. long .. '</property><property name="'
      .. name .. '">x</property></parameters></reason>', "application/xml", 400)
    for _, e in ipairs{ j, x } do
      local n = 0
      for _ in pairs(e.debugInfo) do n = n + 1 end
      assert.equal(64, n)
      assert.equal(4096, #e.parameters.long)
      assert.equal(("é"):rep(2048), e.parameters.long)
      assert.is_nil(e.parameters[name])
    end
    local odd = ucwa.parse_error('{"code":"BadRequest","parameters":{"long":"' .. ("a"):rep(4095) .. 'é"}}',
      "application/json", 400)
    assert.equal(("a"):rep(4095), odd.parameters.long)
  end)

  it("keeps the bags of an event's reason too", function()
    local jb = assert(ucwa.parse_events('{"_links":{"self":{"href":"/e"}},"sender":[{"rel":"communication",'
      .. '"href":"/c","events":[{"link":{"rel":"x","href":"/x"},"type":"completed","status":"Failure",'
      .. '"reason":{"code":"Forbidden","debugInfo":{"diagnostics":"1"},"parameters":[{"name":"p","value":"2"}]}}]}]}',
      "application/json"))
    local r = jb.senders[1].events[1].reason
    assert.same({ diagnostics = "1" }, r.debugInfo)
    assert.same({ p = "2" }, r.parameters)
    local xb = assert(ucwa.parse_events('<events href="/e"><sender rel="communication" href="/c">'
      .. '<completed rel="x" href="/x"><status>Failure</status><reason><code>Forbidden</code>'
      .. '<debugInfo><property name="diagnostics">1</property></debugInfo>'
      .. '<parameters><property name="p">2</property></parameters></reason></completed></sender></events>',
      "application/xml"))
    assert.same(r.debugInfo, xb.senders[1].events[1].reason.debugInfo)
    assert.same(r.parameters, xb.senders[1].events[1].reason.parameters)
  end)

  it("keeps unknown subcodes as given", function()
    local e = ucwa.parse_error('{"code":"Conflict","subcode":"BrandNewSubcode2027"}', "application/json", 409)
    assert.equal("BrandNewSubcode2027", e.subcode)
  end)

  it("derives the code from the HTTP status for an empty or foreign body", function()
    local cases = { [400] = "BadRequest", [403] = "Forbidden", [404] = "NotFound", [409] = "Conflict",
      [410] = "Gone", [412] = "PreconditionFailed", [429] = "TooManyRequests", [500] = "ServiceFailure",
      [503] = "ServiceUnavailable", [504] = "GatewayTimeout", [418] = "BadRequest" }
    for status, code in pairs(cases) do
      local e = ucwa.parse_error("", "application/json", status)
      assert.equal(code, e.code)
      assert.equal(status, e.status)
    end
    local e = ucwa.parse_error("<html><body>Bad gateway</body></html>", "text/html", 502)
    assert.equal("ServiceFailure", e.code)
    assert.equal("502 ServiceFailure: HTTP 502", tostring(e))
    e = ucwa.parse_error("{truncated", "application/json", 404)
    assert.equal("NotFound", e.code)
    e = ucwa.parse_error(nil, nil, 404)
    assert.equal("NotFound", e.code)
  end)

  it("raises on argument errors", function()
    assert.has_error(function() ucwa.parse_error(42, "application/json", 404) end)
    assert.has_error(function() ucwa.parse_error("", "application/json", "x") end)
  end)
end)

describe("error objects", function()
  it("are made by core.error and share one metatable", function()
    local e = core.error{ status = 404, code = "NotFound", subcode = "ApplicationNotFound", message = "m" }
    assert.equal(core.error_mt, getmetatable(e))
    assert.equal("404 NotFound/ApplicationNotFound: m", tostring(e))
    assert.equal("Timeout", tostring(core.error{ code = "Timeout" }))
    assert.equal("Error: oops", tostring(core.error{ message = "oops" }))
    local _, perr = ucwa.parse("{", "application/json")
    assert.equal(core.error_mt, getmetatable(perr))
  end)

  it("are made by core.error from an error object too, which comes back as it is", function()
    local e = core.error{ code = "NotFound" }
    assert.equal(e, core.error(e))
    assert.equal(core.error_mt, getmetatable(core.error(e)))
  end)

  it("leave a table with another metatable alone: core.error copies it", function()
    local mt = { __index = function() return "x" end }
    local t = setmetatable({ code = "Busy", status = 503 }, mt)
    local e = core.error(t)
    assert.are_not.equal(t, e)
    assert.equal(mt, getmetatable(t))
    assert.equal(core.error_mt, getmetatable(e))
    assert.equal("503 Busy", tostring(e))
    assert.has_error(function() core.error("NotFound") end)
  end)

  it("print long fields whole (past the first buffer of tostring)", function()
    local sub, msg = string.rep("s", 3000), string.rep("m", 5000)
    assert.equal("503 Busy/" .. sub .. ": " .. msg, tostring(core.error{ status = 503, code = "Busy", subcode = sub,
      message = msg }))
    assert.equal("Error/7: 1.5", tostring(core.error{ status = 4.5, subcode = 7, message = 1.5 }))
  end)
end)

describe("core.set_limits", function()
  it("returns the limits in force and changes them", function()
    local old = core.set_limits()
    assert.is_number(old.max_body)
    assert.is_number(old.max_depth)
    local now = core.set_limits{ max_depth = 10 }
    assert.equal(10, now.max_depth)
    assert.equal(old.max_body, now.max_body)
    assert.same(now, core.set_limits())
    core.set_limits(old)
    assert.same(old, core.set_limits())
  end)

  it("raises on bad values", function()
    assert.has_error(function() core.set_limits{ max_depth = 0 } end)
    assert.has_error(function() core.set_limits{ max_body = -1 } end)
    assert.has_error(function() core.set_limits{ max_body = "x" } end)
    assert.has_error(function() core.set_limits(5) end)
    assert.has_error(function() core.set_limits{ max_depth = 1.5 } end)
    local ok, err = pcall(core.set_limits, { max_dept = 3 })
    assert.is_false(ok)
    assert.matches("unknown option 'max_dept' (did you mean 'max_depth'?)", err, 1, true)
  end)
end)
