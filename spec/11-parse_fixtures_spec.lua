-- Every sample of the UCWA reference (spec/fixtures/ucwa-docs, the project's copy): what
-- parses, and JSON/XML pairs that comparison.json says agree give one model.
local helpers = require "helpers"
local fixtures = require "support.fixtures"
local cjson = require "cjson.safe"
local ucwa = require "ucwa"

local F = fixtures.dir
local manifest = assert(cjson.decode(helpers.read(F .. "/manifest.json")))
local comparison = assert(cjson.decode(helpers.read(F .. "/comparison.json")))
local html_unescape = fixtures.html_unescape

local function body_of(entry)
  local s = helpers.read(F .. "/" .. entry.file)
  if entry.html_escaped then s = html_unescape(s) end
  return s
end

local CT = { json = "application/json; charset=utf-8", xml = "application/xml" }

local function is_date(s)
  return type(s) == "string" and (s:match("^/Date%(") or s:match("^%d%d%d%d%-%d%d%-%d%dT")) and ucwa.date(s)
end

-- The first difference between tables a and b at path: cmp(a[k], b[k],
-- path.k) for each key of a, then a key only in b; nil when none.
local function table_diff(a, b, path, cmp)
  for k, v in pairs(a) do
    local d = cmp(v, b[k], path .. "." .. tostring(k))
    if d then return d end
  end
  for k in pairs(b) do
    if a[k] == nil then return path .. "." .. tostring(k) .. " (only in second)" end
  end
  return nil
end

-- Deep comparison; returns nil or the path of the first difference.
-- opts.ids: hrefs equal when they differ only in digits; opts.dates: a
-- /Date(ms)/ and an ISO 8601 value are equal when within 2 s (compare.py).
local function diff(a, b, opts, path)
  path = path or "$"
  if type(a) == "table" and type(b) == "table" then
    return table_diff(a, b, path, function(x, y, p) return diff(x, y, opts, p) end)
  end
  if a == b and math.type(a) == math.type(b) then return nil end
  if opts.dates and is_date(a) and is_date(b) and math.abs(ucwa.date(a) - ucwa.date(b)) <= 2 then return nil end
  if opts.ids and type(a) == "string" and type(b) == "string" and a:gsub("%d+", "N") == b:gsub("%d+", "N") then
    return nil
  end
  return string.format("%s: %s (%s) vs %s (%s)", path, tostring(a), math.type(a) or type(a), tostring(b),
    math.type(b) or type(b))
end

-- Same keys and the same Lua types all the way down (values may differ).
local function shape_diff(a, b, path)
  path = path or "$"
  if type(a) ~= type(b) then return string.format("%s: %s vs %s", path, type(a), type(b)) end
  if type(a) ~= "table" then return nil end
  return table_diff(a, b, path, shape_diff)
end

describe("the reference samples", function()
  it("all parse: every valid JSON/XML response, request and event", function()
    local failures, counts = {}, { response = 0, request = 0, event = 0 }
    for _, e in ipairs(manifest) do
      local fmt = e.file:match("%.(json)$") or e.file:match("%.(xml)$")
      local valid = e.valid == true or e.valid_after_lstrip == true or e.valid_after_html_unescape == true
      if fmt and valid then
        local body = body_of(e)
        local res, err
        if e.kind == "event" then
          res, err = ucwa.parse_events(body, CT[fmt])
        else
          res, err = ucwa.parse(body, CT[fmt])
        end
        if res then
          counts[e.kind] = counts[e.kind] + 1
        else
          failures[#failures + 1] = e.file .. ": " .. tostring(err)
        end
      end
    end
    assert.same({}, failures)
    assert.is_true(counts.response >= 300, "responses parsed: " .. counts.response)
    assert.equal(124, counts.event)
    assert.is_true(counts.request >= 80, "requests parsed: " .. counts.request)
  end)

  it("give every event of events.tsv: sender, type, link and in", function()
    local n = 0
    for _, e in ipairs(manifest) do
      if e.kind == "event" then
        local b = assert(ucwa.parse_events(body_of(e), "application/json"))
        local got = {}
        for _, s in ipairs(b.senders) do
          for _, ev in ipairs(s.events) do got[#got + 1] = { s = s, ev = ev } end
        end
        assert.equal(#e.events, #got, e.file)
        for i, want in ipairs(e.events) do
          local g = got[i]
          assert.equal(want.sender_rel, g.s.rel, e.file)
          assert.equal(want.sender_href, g.s.href, e.file)
          assert.equal(want.type, g.ev.type, e.file)
          assert.equal(want.link_rel, g.ev.link.rel, e.file)
          assert.equal(want.link_href, g.ev.link.href, e.file)
          if type(want.in_rel) == "string" then
            assert.equal(want.in_rel, g.ev["in"].rel, e.file)
          else
            assert.is_nil(g.ev["in"], e.file)
          end
          n = n + 1
        end
      end
    end
    assert.is_true(n >= 124)
  end)

  -- The event samples are JSON only: render each as the XML event shape
  -- (EventChannelDetails.md) and check both parse to the same batch.
  local xml_attr = fixtures.xml_attr
  local function xml_link(tag, l)
    local attrs = {}
    local keys = {}
    for k in pairs(l) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do attrs[#attrs + 1] = string.format('%s="%s"', k, xml_attr(l[k])) end
    return string.format("<%s %s", tag, table.concat(attrs, " "))
  end
  local function events_xml(j)
    local out = { '<?xml version="1.0" encoding="utf-8"?>' }
    local links = j._links or {}
    out[#out + 1] = string.format('<events href="%s" xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa">',
      xml_attr(links.self and links.self.href or ""))
    for rel, l in pairs(links) do
      if rel ~= "self" then out[#out + 1] = string.format('<link rel="%s" href="%s"/>', rel, xml_attr(l.href)) end
    end
    for _, s in ipairs(j.sender or {}) do
      out[#out + 1] = string.format('<sender rel="%s" href="%s">', xml_attr(s.rel), xml_attr(s.href))
      for _, ev in ipairs(s.events or {}) do
        out[#out + 1] = xml_link(ev.type, ev.link) .. ">"
        if ev["in"] then out[#out + 1] = xml_link("in", ev["in"]) .. "/>" end
        out[#out + 1] = string.format("</%s>", ev.type)
      end
      out[#out + 1] = "</sender>"
    end
    out[#out + 1] = "</events>"
    return table.concat(out, "\n")
  end

  it("give the same event batches from JSON and from their XML rendering", function()
    local n = 0
    for _, e in ipairs(manifest) do
      if e.kind == "event" then
        local body = body_of(e)
        local j = assert(ucwa.parse_events(body, "application/json"))
        local x = assert(ucwa.parse_events(events_xml(assert(cjson.decode(body))), "application/xml"))
        assert.is_nil(diff(j, x, {}), e.file)
        n = n + 1
      end
    end
    assert.equal(124, n)
  end)

  for _, kind in ipairs{ "response", "request" } do
    local summary = comparison.summary[kind]
    local agree = {}
    for _, tier in ipairs{ "agree_exactly", "agree_except_representation", "agree_except_ids" } do
      for _, page in ipairs(summary[tier]) do agree[page] = tier end
    end

    it("give deep-equal models from JSON and XML " .. kind .. "s where comparison.json says they agree", function()
      local n, failures = 0, {}
      for _, p in ipairs(comparison.pairs[kind]) do
        if p.outcome == "compared" and agree[p.page] then
          local jb = html_unescape(helpers.read(F .. "/" .. p.json_file))
          local xb = html_unescape(helpers.read(F .. "/" .. p.xml_file))
          local j = assert(ucwa.parse(jb, CT.json), p.json_file)
          local x = assert(ucwa.parse(xb, CT.xml), p.xml_file)
          local d = diff(j, x, { dates = true, ids = agree[p.page] == "agree_except_ids" })
          if d then failures[#failures + 1] = p.page .. " " .. d end
          n = n + 1
        end
      end
      assert.same({}, failures)
      assert.is_true(n >= (kind == "response" and 100 or 10), "pairs compared: " .. n)
    end)

    it("give models of one shape from JSON and XML " .. kind .. "s that differ only in values", function()
      local failures = {}
      for _, p in ipairs(comparison.pairs[kind]) do
        if p.outcome == "compared" then
          local j = ucwa.parse(html_unescape(helpers.read(F .. "/" .. p.json_file)), CT.json)
          local x = ucwa.parse(html_unescape(helpers.read(F .. "/" .. p.xml_file)), CT.xml)
          if j and x then
            local d = shape_diff(j, x)
            if d then failures[#failures + 1] = p.page .. " " .. d end
          end
        end
      end
      assert.same({}, failures)
    end)
  end

  it("type the values the samples spell differently (True vs true, 5 vs \"5\") alike", function()
    local function pair(page, method)
      local base = F .. "/samples/" .. page .. "." .. (method or "get")
      return assert(ucwa.parse(helpers.read(base .. "-json-response.1.json"), CT.json)),
        assert(ucwa.parse(helpers.read(base .. "-xml-response.1.xml"), CT.xml))
    end
    local j, x = pair("acceptedByParticipant_ref")
    for _, m in ipairs{ j, x } do
      assert.is_true(m.properties.anonymous)
      assert.is_true(m.properties.inLobby)
    end
    j, x = pair("callForwardingSettings_ref")
    assert.same(j, x)
    j, x = pair("conversationLogTranscript_ref")
    local jd, xd
    for k, v in pairs(j.properties) do
      if type(v) == "string" and v:match("^/Date") then jd, xd = v, x.properties[k] end
    end
    assert.is_string(jd)
    assert.is_true(math.abs(ucwa.date(jd) - ucwa.date(xd)) < 2)
  end)

  it("round-trip request bodies through encode and parse, in both formats", function()
    local n = 0
    for _, e in ipairs(manifest) do
      local fmt = e.file:match("%.(json)$") or e.file:match("%.(xml)$")
      if e.kind == "request" and fmt and (e.valid == true or e.valid_after_html_unescape == true) then
        local m = assert(ucwa.parse(body_of(e), CT[fmt]), e.file)
        for _, out in ipairs{ "json", "xml" } do
          local body, ct = ucwa.encode(m.properties, out)
          local back = assert(ucwa.parse(body, ct), e.file .. " -> " .. out)
          if out == fmt then
            assert.is_nil(diff(m.properties, back.properties, {}), e.file .. " -> " .. out)
          else
            assert.is_nil(shape_diff(m.properties, back.properties), e.file .. " -> " .. out)
          end
        end
        n = n + 1
      end
    end
    assert.is_true(n >= 80, "requests round-tripped: " .. n)
  end)
end)
