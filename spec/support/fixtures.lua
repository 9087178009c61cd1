-- The samples of the UCWA reference (spec/fixtures/ucwa-docs, the project's copy), as the
-- parse specs, bench/parse_bench.lua and tools/gen_schema.lua read them.
-- Plain Lua (no busted): the bench and the generator put spec/ on package.path.
local helpers = require "helpers"

local fixtures = {}

fixtures.dir = helpers.fixtures
fixtures.samples = fixtures.dir .. "/samples/"
fixtures.read = helpers.read

-- Undoes the HTML escaping of the samples that the pages carry escaped.
function fixtures.html_unescape(s)
  local named = { quot = '"', lt = "<", gt = ">", amp = "&", apos = "'" }
  return (s:gsub("&(#?)(%w+);", function(hash, name)
    if hash == "#" then
      local n = tonumber(name)
      return n and utf8.char(n) or nil
    end
    return named[name]
  end))
end

-- A value as an XML attribute's text.
function fixtures.xml_attr(s)
  return (tostring(s):gsub('[&<>"]', { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;" }))
end

-- The onlineMeetingInvitation GET response (JSON and XML) and its "started"
-- event batch: the bodies the parse specs and the bench start from.
function fixtures.invitation()
  local base = fixtures.samples .. "onlineMeetingInvitation_ref."
  return fixtures.read(base .. "get-json-response.1.json"), fixtures.read(base .. "get-xml-response.1.xml"),
    fixtures.read(base .. "event-started.1.json")
end

return fixtures
