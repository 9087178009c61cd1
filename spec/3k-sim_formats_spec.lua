-- ucwa-sim's formats.lua on its own: the one GUID form the simulator writes
-- (an application's endpointId and PUT echo property, a scheduled meeting's),
-- and the writers' strings: the plain ones go out as they are, the rest
-- escaped, the same the second time (short strings' encodings are kept).
local cjson = require "cjson"
local lxp = require "lxp"
local fmt = assert(loadfile("sim/lua/formats.lua"))()

-- What a string reads as once written: invalid UTF-8 cleaned to "?", and in
-- XML the control characters XML 1.0 does not allow dropped (and a CR read
-- as LF: XML's end-of-line handling).
local function expected(s, xml)
  if not utf8.len(s) then s = s:gsub("[\128-\255]", "?") end
  if xml then s = s:gsub("[%z\1-\8\11\12\14-\31]", ""):gsub("\r", "\n") end
  return s
end

local function xml_property(body, name)
  local text, inside = {}, false
  local p = lxp.new({
    StartElement = function(_, el, attrs) inside = el:match("property$") and attrs.name == name end,
    EndElement = function() inside = false end,
    CharacterData = function(_, s) if inside then text[#text + 1] = s end end,
  }, "|")
  assert(p:parse(body))
  assert(p:parse())
  p:close()
  return table.concat(text)
end

describe("ucwa-sim formats", function()
  it("writes 32 hex digits as a GUID, 8-4-4-4-12", function()
    assert.equal("0123abcd-4567-89ef-0123-456789abcdef", fmt.uuid("0123abcd456789ef0123456789abcdef"))
  end)

  it("writes every byte in JSON and XML so that it reads back, twice alike", function()
    for c = 0, 255 do
      local s = "a" .. string.char(c) .. "b"
      local res = fmt.resource("x", "/x"):prop("v", s):link("l", "/l?" .. s)
      for _, xml in ipairs({ false, true }) do
        local write = xml and fmt.resource_xml or fmt.resource_json
        local body = write(res)
        assert.equal(body, write(res), "second write of byte " .. c)
        local v = xml and xml_property(body, "v") or cjson.decode(body).v
        assert.equal(expected(s, xml), v, (xml and "XML" or "JSON") .. ", byte " .. c)
      end
    end
  end)

  it("leaves plain strings as they are and '/' unescaped in JSON", function()
    local href = "/ucwa/oauth/v1/applications/101/events?ack=1&x=~{}|^`"
    local body = fmt.resource_json(fmt.resource("application", href):prop("name", "Bot One"))
    assert.equal('{"rel":"application","name":"Bot One","_links":{"self":{"href":"' .. href .. '"}}}', body)
    local x = fmt.resource_xml(fmt.resource("a", "/a"):prop("t", [[<&>"']]))
    assert.truthy(x:find('<property name="t">&lt;&amp;&gt;&quot;&apos;</property>', 1, true))
  end)

  it("groups rels in first-seen order: multi ones as arrays, a repeated single one keeps its last", function()
    local res = fmt.resource("r", "/r"):link("a", "/a1"):link_list("m", { { href = "/m1" }, { href = "/m2" } })
      :link("a", "/a2"):link_list("none", {})
    assert.equal('{"rel":"r","_links":{"self":{"href":"/r"},"a":{"href":"/a2"},'
      .. '"m":[{"href":"/m1"},{"href":"/m2"}],"none":[]}}', fmt.resource_json(res))
  end)
end)
