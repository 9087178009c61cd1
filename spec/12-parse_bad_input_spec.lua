-- Bad input never crashes, never raises and never gives a partial model:
-- nil, err with code "ParseError", a subcode, and a message saying what and where.
local fixtures = require "support.fixtures"
local ucwa = require "ucwa"
local core = require "ucwa.core"

local json_body, xml_body, events_body = fixtures.invitation()

local function refused(subcode, pattern, f, ...)
  local ok, res, err = pcall(f, ...)
  assert.is_true(ok, "raised: " .. tostring(res))
  assert.is_nil(res)
  assert.is_table(err)
  assert.equal(core.error_mt, getmetatable(err))
  assert.equal("ParseError", err.code)
  if subcode then assert.equal(subcode, err.subcode, err.message) end
  if pattern then assert.matches(pattern, err.message) end
  assert.matches("^ParseError/", tostring(err))
  return err
end

describe("bad input to ucwa.parse", function()
  local saved = core.set_limits()
  after_each(function() core.set_limits(saved) end)

  it("refuses every truncation of a JSON body, naming the character", function()
    for n = 0, #json_body - 2 do
      local body = json_body:sub(1, n)
      if body:match("%S") then
        refused(nil, "character %d+", ucwa.parse, body, "application/json")
      else
        refused("SyntaxError", "empty", ucwa.parse, body, "application/json")
      end
    end
  end)

  it("refuses every truncation of an XML body, naming line and column", function()
    for n = 0, #xml_body - 2 do
      local body = xml_body:sub(1, n)
      refused("SyntaxError", "line %d+, column %d+", ucwa.parse, body, "application/xml")
    end
  end)

  it("refuses truncated event batches in both formats", function()
    for n = 1, #events_body - 2, 7 do
      refused(nil, nil, ucwa.parse_events, events_body:sub(1, n), "application/json")
    end
    local xml = '<events href="/e?ack=1"><link rel="next" href="/e?ack=2"/><sender rel="me" href="/me">'
      .. '<added rel="note" href="/me/note"/></sender></events>'
    for n = 1, #xml - 1 do
      refused("SyntaxError", "line 1, column %d+", ucwa.parse_events, xml:sub(1, n), "application/xml")
    end
  end)

  it("refuses unknown content types", function()
    for _, ct in ipairs{ "text/html", "text/plain", "application/octet-stream", "", "multipart/batching" } do
      refused("UnsupportedContentType", "content type", ucwa.parse, json_body, ct)
      refused("UnsupportedContentType", "content type", ucwa.parse_events, events_body, ct)
    end
    refused("UnsupportedContentType", "content type", ucwa.parse, "hello", nil)
  end)

  it("refuses the wrong format for the content type", function()
    refused(nil, "JSON", ucwa.parse, xml_body, "application/json")
    refused("SyntaxError", "line 1, column 1", ucwa.parse, json_body, "application/xml")
  end)

  it("refuses JSON that is not an object", function()
    for _, body in ipairs{ "[1,2,3]", "42", '"str"', "null", "true", "[]" } do
      refused("UnexpectedShape", "not an object", ucwa.parse, body, "application/json")
    end
  end)

  it("refuses JSON syntax errors with the cjson message", function()
    local err = refused("SyntaxError", "character 9", ucwa.parse, '{"a": 1,, "b": 2}', "application/json")
    assert.matches("invalid JSON", err.message)
    refused("SyntaxError", nil, ucwa.parse, '{"a": NaN}', "application/json")
    refused("SyntaxError", nil, ucwa.parse, '{"a": 1} trailing', "application/json")
  end)

  it("refuses XML with a DTD (billion laughs) or entity declarations", function()
    local laughs = [[<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<resource rel="x" href="/x"><property name="a">&lol2;</property></resource>]]
    refused("DtdNotAllowed", "DTD.*line 2, column 1", ucwa.parse, laughs, "application/xml")
    local ext = [[<?xml version="1.0"?><!DOCTYPE r SYSTEM "file:///etc/passwd"><resource rel="x"/>]]
    refused("DtdNotAllowed", "DTD", ucwa.parse, ext, "application/xml")
    refused("DtdNotAllowed", "DTD", ucwa.parse_events, ext, "application/xml")
    -- an undeclared entity is a plain syntax error
    refused("SyntaxError", "undefined entity.*line 1", ucwa.parse,
      '<resource rel="x"><property name="a">&foo;</property></resource>', "application/xml")
  end)

  it("refuses nesting deeper than max_depth, in both formats", function()
    local old = core.set_limits()
    local deep_json = string.rep('{"a":', 200) .. "1" .. string.rep("}", 200)
    refused("NestingTooDeep", "nested", ucwa.parse, deep_json, "application/json")
    local deep_xml = string.rep("<resource>", 200) .. string.rep("</resource>", 200)
    refused("NestingTooDeep", "max_depth " .. old.max_depth .. " at line 1", ucwa.parse, deep_xml, "application/xml")
    core.set_limits{ max_depth = 2 }
    refused("NestingTooDeep", "max_depth 2 at line 15, column 5 %(byte 1145%)", ucwa.parse, xml_body, "application/xml")
    refused("NestingTooDeep", "character", ucwa.parse, json_body, "application/json")
    core.set_limits{ max_depth = 250 }
    assert.is_table(ucwa.parse(deep_json, "application/json"))
    assert.is_table(ucwa.parse(deep_xml, "application/xml"))
    core.set_limits(old)
  end)

  it("refuses bodies over max_body before parsing them", function()
    local old = core.set_limits()
    core.set_limits{ max_body = 100 }
    refused("BodyTooLarge", "exceeds max_body %(100 bytes%)", ucwa.parse, json_body, "application/json")
    refused("BodyTooLarge", "max_body", ucwa.parse, xml_body, "application/xml")
    refused("BodyTooLarge", "max_body", ucwa.parse_events, events_body, "application/json")
    assert.is_table(ucwa.parse('{"rel":"x"}', "application/json"))
    core.set_limits(old)
  end)

  it("refuses event batches of the wrong shape", function()
    refused("UnexpectedShape", "sender", ucwa.parse_events, '{"sender":5}', "application/json")
    refused("UnexpectedShape", "sender%[1%]", ucwa.parse_events, '{"sender":[5]}', "application/json")
    refused("UnexpectedShape", "sender%[1%]%.events%[2%]", ucwa.parse_events,
      '{"sender":[{"events":[{"type":"added"},"x"]}]}', "application/json")
    refused("UnexpectedShape", "<resource>", ucwa.parse_events, xml_body, "application/xml")
  end)

  it("survives garbage and odd bytes", function()
    local bodies = { "\0\0\0", "<", "<<<>>>", "{\"a\":\"\0\"", "\255\254<\0r\0>", "<r>\200</r>",
      "<r a='1' a='2'/>", "<a></b>", "<?xml version='1.0' encoding='bogus'?><r/>", "<r/><r/>" }
    for _, b in ipairs(bodies) do
      for _, ct in ipairs{ "application/json", "application/xml" } do
        local ok, res = pcall(ucwa.parse, b, ct)
        assert.is_true(ok)
        ok = pcall(ucwa.parse_events, b, ct)
        assert.is_true(ok)
        ok = pcall(ucwa.parse_error, b, ct, 500)
        assert.is_true(ok)
        assert.is_true(res == nil or type(res) == "table")
      end
    end
  end)

  it("raises on argument errors", function()
    assert.has_error(function() ucwa.parse(nil, "application/json") end)
    assert.has_error(function() ucwa.parse(42, "application/json") end)
    assert.has_error(function() ucwa.parse({}, "application/json") end)
    assert.has_error(function() ucwa.parse("{}", 42) end)
    assert.has_error(function() ucwa.parse_events(nil, "application/json") end)
    assert.has_error(function() ucwa.date(nil) end)
    assert.has_error(function() ucwa.date(12) end)
  end)

  it("keeps the model intact when a finalizer parses XML in the middle of a parse (re-entrancy)", function()
    local want_x = ucwa.parse(xml_body, "application/xml")
    local want_j = ucwa.parse(json_body, "application/json")
    local inner, bad = 0, 0
    -- a different, bigger body: with a shared parser state it would overwrite
    -- (and reallocate) the tree the outer call is reading
    local other = { '<resource rel="other" href="/o">' }
    for i = 1, 300 do other[#other + 1] = string.format('<link rel="l%d" href="/other/link/%d"/>', i, i) end
    other = table.concat(other) .. "</resource>"
    local function arm()
      setmetatable({}, { __gc = function()
        inner = inner + 1
        local m = ucwa.parse(other, "xml")
        local e = ucwa.parse_events(events_body, "application/json")
        local b = ucwa.encode({ a = "x", b = { 1, 2 } }, "xml")
        if not (m and m.rel == "other" and e and b) then bad = bad + 1 end
      end })
    end
    local got_x, got_j = {}, {}
    collectgarbage("incremental", 0, 1000)  -- collect all the time
    for i = 1, 2000 do
      for _ = 1, 5 do arm() end
      got_x[i] = ucwa.parse(xml_body, "application/xml")
      got_j[i] = ucwa.parse(json_body, "application/json")
    end
    collectgarbage("incremental", 200, 100)
    for i = 1, #got_x do
      assert.same(want_x, got_x[i])
      assert.same(want_j, got_j[i])
    end
    collectgarbage()
    assert.is_true(inner > 0)
    assert.equal(0, bad)
  end)

  it("parses again correctly after a failure (no state left behind)", function()
    refused(nil, nil, ucwa.parse, xml_body:sub(1, 500), "application/xml")
    local m = assert(ucwa.parse(xml_body, "application/xml"))
    assert.equal("Connecting", m.properties.state)
    refused(nil, nil, ucwa.parse, json_body:sub(1, 500), "application/json")
    assert.equal("Connected", assert(ucwa.parse(json_body, "application/json")).properties.state)
  end)
end)

-- What a hostile server's bytes become (docs/parsing.md, "Invalid UTF-8 and NUL").
describe("invalid UTF-8 and NUL bytes from a server", function()
  local FFFD = "\xEF\xBF\xBD"
  local function json_prop(v)
    return assert(ucwa.parse('{"rel":"x","p":"' .. v .. '"}', "application/json")).properties.p
  end
  local function xml_prop(v, decl)
    return assert(ucwa.parse((decl or '<?xml version="1.0"?>') .. '<resource rel="x" href="/x" '
      .. 'xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa"><property name="p">' .. v .. '</property></resource>',
      "application/xml")).properties.p
  end

  -- regression: invalid UTF-8 reached the bot unchanged (and XML refused the whole body)
  it("become U+FFFD, one for each maximal ill-formed subpart, in both formats", function()
    for _, c in ipairs{
      { "x\xFFy", "x" .. FFFD .. "y" },                 -- a byte that is never UTF-8
      { "\xE2\x82", FFFD },                              -- a truncated sequence: one
      { "\xE2\x82\xACok\xE2", "\xE2\x82\xACok" .. FFFD },
      { "\xC0\xAF", FFFD .. FFFD },                      -- overlong
      { "\xED\xA0\x80", FFFD .. FFFD .. FFFD },          -- a surrogate
      { "\xF4\x90\x80\x80", FFFD:rep(4) },               -- past U+10FFFF
      { "caf\xC3\xA9 \xF0\x9F\x98\x80", "caf\xC3\xA9 \xF0\x9F\x98\x80" },  -- valid: as given
    } do
      assert.equal(c[2], json_prop(c[1]))
      assert.equal(c[2], xml_prop(c[1]))
    end
  end)

  it("are repaired everywhere in a model: links, titles, event batches, error bodies", function()
    local b = assert(ucwa.parse_events('{"_links":{"next":{"href":"/e?ack=2"}},"sender":[{"rel":"me",'
      .. '"href":"/m\xFE","events":[{"type":"added","link":{"rel":"x","href":"/x","title":"Bob \xFF"}}]}]}'))
    assert.equal("/m" .. FFFD, b.senders[1].href)
    assert.equal("Bob " .. FFFD, b.senders[1].events[1].link.title)
    local e = ucwa.parse_error('{"code":"BadRequest","message":"no \xFF"}', "application/json", 400)
    assert.equal("no " .. FFFD, e.message)
    -- so what a bot echoes can be encoded (encode refuses invalid UTF-8)
    assert(ucwa.encode({ subject = json_prop("a\xFFb") }, "xml"))
  end)

  it("leave bodies in other declared encodings to expat, which gives UTF-8", function()
    assert.equal("caf\xC3\xA9", xml_prop("caf\xE9", '<?xml version="1.0" encoding="ISO-8859-1"?>'))
  end)

  it("keep NUL as given in JSON (\\u0000: Lua strings are bytes); XML cannot carry it", function()
    assert.equal("a\0b", json_prop("a\\u0000b"))
    refused("SyntaxError", "not well%-formed", ucwa.parse, '<?xml version="1.0"?><resource rel="x" href="/x">'
      .. '<property name="p">a\0b</property></resource>', "application/xml")
    refused("SyntaxError", "invalid character", ucwa.parse, '<?xml version="1.0"?><resource rel="x" href="/x">'
      .. '<property name="p">a&#0;b</property></resource>', "application/xml")
    -- encode names it rather than sending it
    assert.has_error(function() ucwa.encode({ p = "a\0b" }, "xml") end, "ucwa.encode: p has control character 0x00, "
      .. "which XML cannot carry")
  end)
end)
