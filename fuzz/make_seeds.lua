-- Seeds for the event-batch fuzz targets, made from the reference's event
-- samples (spec/fixtures/ucwa-docs, the project's copy).
--
--   lua5.4 make_seeds.lua <fixtures dir> <JSON seed dir> <XML seed dir>
--
-- The 124 event samples alone all take one path through parse_events (a
-- sender, events with link and in, nothing embedded): the fuzzer merged them
-- into one input and never reached the rest of the event parser. So each
-- sample is also written in the shapes the parser handles differently:
--   .embedded  every event carries the resource of its rel (the GET response
--              sample of that resource), as real servers embed it
--   .completed the operation completed: status Failure and a reason
--   .strlinks  links given as strings, a resync link instead of next
--   .resume    a resume batch with nothing in it (a timeout or a resume)
-- and a few batches put together from many samples (many senders, the same
-- sender twice, every event type). XML seeds are the same batches in the XML
-- event shape of EventChannelDetails.md, embedded resources from the XML
-- GET samples. Deterministic: the same files every run.
local cjson = require "cjson"

local fixtures, json_dir, xml_dir = arg[1], arg[2], arg[3]
assert(fixtures and json_dir and xml_dir, "usage: lua5.4 make_seeds.lua <fixtures dir> <json dir> <xml dir>")

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- the samples' HTML escaping, undone as the parse specs undo it
package.path = "../spec/?.lua;" .. package.path
local html_unescape = require("support.fixtures").html_unescape

local manifest = cjson.decode((assert(read(fixtures .. "/manifest.json"), "no manifest.json")))

-- the sample body of an entry, unescaped when the page carries it escaped
local function body_of(e)
  local s = read(fixtures .. "/" .. e.file)
  if s and e.html_escaped then s = html_unescape(s) end
  return s
end

-- GET response samples per resource, JSON (decoded) and XML (text)
local get_json, get_xml = {}, {}
for _, e in ipairs(manifest) do
  if e.section == "get-json-response" and e.resource and not get_json[e.resource] then
    local ok, v = pcall(cjson.decode, body_of(e) or "")
    if ok and type(v) == "table" then get_json[e.resource] = v end
  elseif e.section == "get-xml-response" and e.resource and not get_xml[e.resource] then
    local s = body_of(e)
    if s then get_xml[e.resource] = s:gsub("^%s*<%?xml.-%?>%s*", "") end
  end
end

local function copy(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = copy(v) end
  return c
end

local function events_of(batch)
  local all = {}
  for _, s in ipairs(batch.sender or {}) do
    for _, ev in ipairs(s.events or {}) do all[#all + 1] = ev end
  end
  return all
end

local REASON = { code = "Forbidden", subcode = "SomethingNew", message = "Rejected by the fuzz seed" }

local variants = {
  embedded = function(b)
    local any = false
    for _, ev in ipairs(events_of(b)) do
      local rel = ev.link and ev.link.rel
      if rel and get_json[rel] then
        ev._embedded = { [rel] = copy(get_json[rel]) }
        any = true
      end
    end
    return any and b
  end,
  completed = function(b)
    for i, ev in ipairs(events_of(b)) do
      ev.type = "completed"
      ev.status = i % 2 == 1 and "Failure" or "Success"
      if ev.status == "Failure" then ev.reason = copy(REASON) end
    end
    return b
  end,
  strlinks = function(b)
    local l = b._links or {}
    b._links = { self = l.self and l.self.href, resync = l.next and l.next.href or "/events?ack=2" }
    return b
  end,
  resume = function(b)
    local l = b._links or {}
    b._links = { self = l.self, resume = l.next or { href = "/events?ack=2" } }
    b.sender = {}
    return b
  end,
}
local VARIANT_NAMES = { "embedded", "completed", "strlinks", "resume" }

-- ---------------------------------------------------------------- XML rendering

local function attr(s)
  return (tostring(s):gsub('[&<>"]', { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;" }))
end

local function text(s)
  return (tostring(s):gsub("[&<>]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;" }))
end

local function link_attrs(l)
  local out = {}
  for _, k in ipairs{ "rel", "href", "title" } do
    if type(l) == "table" and l[k] then out[#out + 1] = (' %s="%s"'):format(k, attr(l[k])) end
  end
  return table.concat(out)
end

local function href_of(l)
  if type(l) == "table" then return l.href end
  return l
end

local function to_xml(b)
  local out = { '<?xml version="1.0" encoding="utf-8"?>' }
  local links = b._links or {}
  out[#out + 1] = ('<events href="%s" xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa">'):format(
    attr(href_of(links.self) or "/events?ack=1"))
  for _, rel in ipairs{ "next", "resync", "resume" } do
    if links[rel] then out[#out + 1] = ('  <link rel="%s" href="%s" />'):format(rel, attr(href_of(links[rel]))) end
  end
  for _, s in ipairs(b.sender or {}) do
    out[#out + 1] = ('  <sender rel="%s" href="%s">'):format(attr(s.rel or ""), attr(s.href or ""))
    for _, ev in ipairs(s.events or {}) do
      local kids = {}
      if ev["in"] then kids[#kids + 1] = "<in" .. link_attrs(ev["in"]) .. " />" end
      if ev.status then kids[#kids + 1] = "<status>" .. text(ev.status) .. "</status>" end
      if ev.reason then
        kids[#kids + 1] = ("<reason><code>%s</code><subcode>%s</subcode><message>%s</message></reason>"):format(
          text(ev.reason.code), text(ev.reason.subcode), text(ev.reason.message))
      end
      local rel = ev.link and ev.link.rel
      if ev._embedded and rel and get_xml[rel] then kids[#kids + 1] = get_xml[rel] end
      local tag = ev.type or "updated"
      out[#out + 1] = ("    <%s%s>%s</%s>"):format(tag, link_attrs(ev.link), table.concat(kids), tag)
    end
    out[#out + 1] = "  </sender>"
  end
  out[#out + 1] = "</events>"
  return table.concat(out, "\n")
end

-- ---------------------------------------------------------------- the seeds

local n, samples = 0, {}
local function emit(name, batch)
  write(json_dir .. "/" .. name .. ".json", cjson.encode(batch))
  write(xml_dir .. "/" .. name .. ".xml", to_xml(batch))
  n = n + 1
end

for _, e in ipairs(manifest) do
  if e.kind == "event" and e.format == "json" then
    local body = body_of(e)
    local ok, batch = pcall(cjson.decode, body or "")
    if ok and type(batch) == "table" then
      local base = e.file:match("([^/]+)%.json$")
      write(json_dir .. "/" .. base .. ".json", body) -- the sample itself, byte for byte
      write(xml_dir .. "/" .. base .. ".xml", to_xml(batch))
      n = n + 1
      samples[#samples + 1] = batch
      for _, v in ipairs(VARIANT_NAMES) do
        local b = variants[v](copy(batch))
        if b then emit(base .. "." .. v, b) end
      end
    end
  end
end

-- batches of many samples: senders side by side, and one sender's events run together
local function merged(from, to, same_sender, variant)
  local b = { _links = { self = { href = "/events?ack=7" }, next = { href = "/events?ack=8" } }, sender = {} }
  for i = from, math.min(to, #samples) do
    for _, s in ipairs(samples[i].sender or {}) do
      if same_sender and b.sender[1] then
        for _, ev in ipairs(s.events or {}) do b.sender[1].events[#b.sender[1].events + 1] = copy(ev) end
      else
        b.sender[#b.sender + 1] = copy(s)
      end
    end
  end
  return variant and variants[variant](b) or b
end
for i = 1, #samples, 16 do
  emit(("merged-%03d"):format(i), merged(i, i + 15, false, i % 32 == 1 and "embedded" or "completed"))
  emit(("one-sender-%03d"):format(i), merged(i, i + 15, true))
end

io.write(("make_seeds: %d event batches from %d samples, JSON in %s, XML in %s\n"):format(n, #samples, json_dir,
  xml_dir))
