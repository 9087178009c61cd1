-- ucwa.encode (request bodies) and ucwa.date.
local ucwa = require "ucwa"
local cjson = require "cjson.safe"

describe("ucwa.encode", function()
  local input = {
    onlineMeetingUri = "sip:john@contoso.com;gruu;opaque=app:conf:focus:id:ABCDE",
    operationId = "74cb7404e0a247d5a2d4eb0376a47dbf",
    subject = "Q&A <draft> \"quoted\" 'single'\tand\r\nlines — ünïcode",
    importance = "Normal",
    joinAudioMuted = false,
    joinVideoMuted = true,
    ringDelay = 5,
    ratio = 0.25,
    modalities = { "Messaging", "Audio" },
  }

  it("gives a JSON body and its content type", function()
    local body, ct = ucwa.encode(input, "json")
    assert.equal("application/json", ct)
    local back = assert(cjson.decode(body))
    assert.equal(input.subject, back.subject)
    assert.equal(false, back.joinAudioMuted)
    assert.same(input.modalities, back.modalities)
    assert.equal(ct, select(2, ucwa.encode(input)))
  end)

  it("gives the XML <input> form with properties sorted, True/False and propertyList", function()
    local body, ct = ucwa.encode({ subject = "Standup", joinAudioMuted = false, joinVideoMuted = true,
      modalities = { "Messaging", "Audio" }, ringDelay = 5 }, "xml")
    assert.equal("application/xml", ct)
    assert.equal([[<?xml version="1.0" encoding="utf-8"?>
<input xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa">
  <property name="joinAudioMuted">False</property>
  <property name="joinVideoMuted">True</property>
  <propertyList name="modalities"><item>Messaging</item><item>Audio</item></propertyList>
  <property name="ringDelay">5</property>
  <property name="subject">Standup</property>
</input>
]], body)
  end)

  it("escapes markup, quotes and line breaks in XML", function()
    local body = ucwa.encode({ subject = input.subject, ["a&b"] = "x" }, "xml")
    assert.matches('name="a&amp;b"', body, 1, true)
    assert.matches("Q&amp;A &lt;draft&gt; &quot;quoted&quot; 'single'&#9;and&#13;&#10;lines", body, 1, true)
    assert.not_matches("<draft>", body, 1, true)
  end)

  for _, fmt in ipairs{ "json", "xml" } do
    it("round-trips through parse with types kept (" .. fmt .. ")", function()
      local m = assert(ucwa.parse(ucwa.encode(input, fmt)))
      local p = m.properties
      assert.equal(input.subject, p.subject)
      assert.equal(input.onlineMeetingUri, p.onlineMeetingUri)
      assert.is_false(p.joinAudioMuted)
      assert.is_true(p.joinVideoMuted)
      assert.equal(5, p.ringDelay)
      assert.equal("integer", math.type(p.ringDelay))
      assert.same({ "Messaging", "Audio" }, p.modalities)
      assert.same({}, m.links)
      assert.same({}, m.embedded)
    end)
  end

  it("leaves out null values and writes empty lists", function()
    local body = ucwa.encode({ a = cjson.null, b = {} }, "xml")
    assert.not_matches('name="a"', body, 1, true)
    assert.matches('<propertyList name="b"></propertyList>', body, 1, true)
  end)

  it("raises on what cannot be sent", function()
    assert.has_error(function() ucwa.encode("x", "json") end)
    assert.has_error(function() ucwa.encode({}, "yaml") end)
    assert.has_error(function() ucwa.encode({ f = print }, "json") end)
    assert.has_error(function() ucwa.encode({ f = print }, "xml") end)
    assert.has_error(function() ucwa.encode({ nested = { a = 1 } }, "xml") end)
    assert.has_error(function() ucwa.encode({ list = { {} } }, "xml") end)
    assert.has_error(function() ucwa.encode({ [1] = "x" }, "xml") end)
    assert.has_error(function() ucwa.encode({ s = "bell\7" }, "xml") end, nil)
    assert.has_error(function() ucwa.encode({ s = "bad \255 utf8" }, "xml") end)
    assert.has_error(function() ucwa.encode({ n = 0 / 0 }, "xml") end)
    assert.has_error(function() ucwa.encode({ n = math.huge }, "json") end)
  end)

  -- regression: docs/parsing.md said invalid UTF-8 raises, but JSON encoding sent the
  -- bytes as they were (a body that is not JSON)
  it("raises on invalid UTF-8 in JSON too, naming the property", function()
    for _, t in ipairs{ { subject = "bad \255" }, { modalities = { "Audio", "\192\175" } }, { ["k\255"] = 1 } } do
      local ok, err = pcall(ucwa.encode, t, "json")
      assert.is_false(ok)
      assert.matches("not valid UTF%-8", err)
    end
    assert.matches("ucwa.encode: subject is not valid UTF-8 (byte 5)",
      select(2, pcall(ucwa.encode, { subject = "bad \255" }, "json")), 1, true)
    assert.equal('{"subject":"caf\195\169"}', ucwa.encode({ subject = "caf\195\169" }, "json"))
  end)

  -- regression: the message was formatted by lua_pushfstring, which has no %02x
  it("names a control character in XML instead of raising \"invalid option '%0' to 'lua_pushfstring'\"",
    function()
      local ok, err = pcall(ucwa.encode, { a = "\1" }, "xml")
      assert.is_false(ok)
      assert.not_matches("invalid option", err, 1, true)
      assert.matches("ucwa.encode: a has control character 0x01, which XML cannot carry", err, 1, true)
      ok, err = pcall(ucwa.encode, { s = "bell\7" }, "xml")
      assert.is_false(ok)
      assert.matches("control character 0x07", err, 1, true)
    end)
end)

describe("ucwa.date", function()
  it("reads /Date(ms)/ as epoch seconds, offsets and all", function()
    assert.equal(1234567890.123, ucwa.date("/Date(1234567890123)/"))
    assert.equal(1234567890, ucwa.date("/Date(1234567890000)/"))
    assert.equal("integer", math.type(ucwa.date("/Date(1234567890000)/")))
    assert.equal(1234567890.123, ucwa.date("/Date(1234567890123+0100)/"))
    assert.equal(1234567890.123, ucwa.date("/Date(1234567890123-0800)/"))
    assert.equal(1234567890.123, ucwa.date("\\/Date(1234567890123)\\/"))
    assert.equal(-1, ucwa.date("/Date(-1000)/"))
    assert.equal(0, ucwa.date("/Date(0)/"))
  end)

  it("reads ISO 8601 with zones and fractions", function()
    assert.equal(1425470400, ucwa.date("2015-03-04T12:00:00Z"))
    assert.equal(1425470400, ucwa.date("2015-03-04T13:00:00+01:00"))
    assert.equal(1425470400, ucwa.date("2015-03-04T04:00:00-0800"))
    assert.equal(1425470400, ucwa.date("2015-03-04T12:00:00"))
    assert.equal(1425470400.5, ucwa.date("2015-03-04T12:00:00.5Z"))
    assert.equal(1425427200, ucwa.date("2015-03-04"))
    assert.equal(951782400, ucwa.date("2000-02-29T00:00:00Z"))
    assert.equal(0, ucwa.date("1970-01-01T00:00:00Z"))
    -- the same instant as the JSON sample of conversationLogTranscript
    local x = ucwa.date("2016-09-26T16:20:23.0485629-07:00")
    assert.is_true(math.abs(x - 1474932023.0485629) < 1e-6)
    assert.is_true(math.abs(x - ucwa.date("/Date(1474932023030)/")) < 0.1)
  end)

  it("gives nil, err for anything else", function()
    for _, bad in ipairs{ "", "nope", "/Date()/", "/Date(12)", "/Date(abc)/", "/Date(1)/x", "2015-13-01",
      "2015-02-29", "2015-03-04T25:00:00Z", "2015-03-04T12:00:00+1", "2015-03-04T12:00:00Zjunk",
      "2015-03-04T12", "/Date(123456789012345678901)/", "15-03-04" } do
      local v, err = ucwa.date(bad)
      assert.is_nil(v, bad)
      assert.equal("ParseError", err.code)
      assert.equal("BadDate", err.subcode)
      assert.matches("not a UCWA date", err.message)
    end
  end)
end)
