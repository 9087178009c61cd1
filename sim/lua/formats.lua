-- ucwa-sim: the two UCWA representations (PayloadFormat.md), and the plain
-- JSON of the control API.
--
-- Resources are built as an ordered model and written out as JSON or XML:
--   res = { rel=, href=, props = { {name, value}, ... },
--           links = { {rel=, href=, title=, multi=}, ... },
--           embedded = { {rel=, value=res|{res...}, multi=}, ... } }
-- A property value is a string, number, boolean, an array (propertyList) or
-- fmt.date(ms).  Input bodies (JSON, or XML <input><property ...>) are parsed
-- with lua-cjson and lua-expat.
local cjson = require "cjson.safe"
local lxp = require "lxp"

local fmt = {}

local NS = "http://schemas.microsoft.com/rtc/2012/03/ucwa"
local DATE = {}

function fmt.date(ms)
  return setmetatable({ ms = ms }, DATE)
end

-- Strings from clients may hold anything: keep output valid UTF-8.
function fmt.clean(s)
  s = tostring(s)
  if not utf8.len(s) then
    s = s:gsub("[\128-\255]", "?")
  end
  return s
end

-- 32 hex digits (host.random(16)) in a GUID's 8-4-4-4-12 form: the
-- endpointId and the PUT echo property's name.
function fmt.uuid(hex)
  return hex:sub(1, 8) .. "-" .. hex:sub(9, 12) .. "-" .. hex:sub(13, 16) .. "-" .. hex:sub(17, 20) .. "-"
    .. hex:sub(21, 32)
end

---------------------------------------------------------------------------
-- A small builder for resources.
local Res = {}
Res.__index = Res

function fmt.resource(rel, href)
  return setmetatable({ rel = rel, href = href, props = {}, links = {}, embedded = {} }, Res)
end

function Res:prop(name, value)
  if value ~= nil then
    self.props[#self.props + 1] = { name, value }
  end
  return self
end

function Res:link(rel, href, title)
  if href then
    self.links[#self.links + 1] = { rel = rel, href = href, title = title }
  end
  return self
end

-- A collection rel: always an array in JSON, even with one or no member, so
-- an empty list leaves a marker.  entry(member) gives the entry's own fields.
local function add_list(entries, rel, list, entry)
  for _, x in ipairs(list) do
    local e = entry(x)
    e.rel, e.multi = rel, true
    entries[#entries + 1] = e
  end
  if #list == 0 then
    entries[#entries + 1] = { rel = rel, multi = true, empty = true }
  end
end

local function link_entry(l) return { href = l.href, title = l.title } end
local function embed_entry(r) return { value = r } end

function Res:link_list(rel, list)
  add_list(self.links, rel, list, link_entry)
  return self
end

function Res:embed(rel, res)
  if res then
    self.embedded[#self.embedded + 1] = { rel = rel, value = res }
  end
  return self
end

function Res:embed_list(rel, list)
  add_list(self.embedded, rel, list, embed_entry)
  return self
end

---------------------------------------------------------------------------
-- JSON writer

local jesc = {
  ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
  ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t", ["/"] = "\\/",
}

local function jesc_char(c)
  return jesc[c] or string.format("\\u%04x", c:byte())
end

-- Most strings are printable ASCII with nothing to escape: one anchored
-- match of a set says so (cheaper than a search for what to escape, and
-- valid UTF-8 without a check), and the string goes out as it is.  The set
-- is printable ASCII but for '"' and '\\', its likeliest ranges first.
local PLAIN_JSON = '^[a-~#-[ !%]^-`]*$'

-- Short strings (names, rels, most values) repeat from answer to answer:
-- their encodings are kept, up to a bound.
local MEMO_LEN, MEMO_MAX = 40, 4096

-- A memo: its table (string -> encoding), and the function that keeps
-- one more encoding while the bound allows (returning it).
local function memo()
  local map, n = {}, 0
  return map, function(s, v)
    if #s <= MEMO_LEN and n < MEMO_MAX then
      map[s], n = v, n + 1
    end
    return v
  end
end

local jmemo, jremember = memo()

local function jstr(s)
  local v = jmemo[s]
  if v then return v end
  if type(s) == "string" and s:find(PLAIN_JSON) then
    return jremember(s, '"' .. s .. '"')
  end
  local clean = fmt.clean(s)
  v = '"' .. clean:gsub('[%c"\\]', jesc_char) .. '"'
  if type(s) == "string" then jremember(s, v) end
  return v
end

local function jnum(n)
  if math.type(n) == "integer" then
    return tostring(n)
  elseif n ~= n or n == math.huge or n == -math.huge then
    return "null"
  elseif n == math.floor(n) and math.abs(n) < 2 ^ 53 then
    return string.format("%d", n)
  end
  return string.format("%.14g", n)
end

local function jvalue(v)
  local t = type(v)
  if t == "string" then
    return jstr(v)
  elseif t == "number" then
    return jnum(v)
  elseif t == "boolean" then
    return v and "true" or "false"
  elseif getmetatable(v) == DATE then
    -- ASP.NET AJAX dates, as UCWA sends them: "\/Date(ms)\/"
    return '"\\/Date(' .. string.format("%d", v.ms) .. ')\\/"'
  elseif t == "table" then
    local parts = {}
    for i, x in ipairs(v) do
      parts[i] = jvalue(x)
    end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  return "null"
end

local function jlink(l)
  local s = '{"href":' .. jstr(l.href)
  if l.title then
    s = s .. ',"title":' .. jstr(l.title)
  end
  return s .. "}"
end

-- Groups entries by rel, keeping first-seen order; multi rels become arrays
-- (of their entries but empty markers), a rel seen more than once that is
-- not multi keeps its last entry.  `first`: an entry before `entries` (a
-- resource's self link).  No table a group: 10,000 applications a sign-in
-- run each write some thirty rels.
local function grouped(entries, write, first)
  local order, single, lists, n = {}, {}, {}, 0
  if first then
    n = 1
    order[1], single[first.rel] = first.rel, first
  end
  for i = 1, #entries do
    local e = entries[i]
    local rel = e.rel
    local list = lists[rel]
    if list then
      if not e.empty then list[#list + 1] = e end
    elseif single[rel] then
      if not e.empty then single[rel] = e end
    else
      n = n + 1
      order[n] = rel
      if e.multi then
        lists[rel] = e.empty and {} or { e }
      else
        single[rel] = e
      end
    end
  end
  for i = 1, n do
    local rel = order[i]
    local list = lists[rel]
    local v
    if list then
      local items = {}
      for j = 1, #list do
        items[j] = write(list[j])
      end
      v = "[" .. table.concat(items, ",") .. "]"
    else
      v = write(single[rel])
    end
    order[i] = jstr(rel) .. ":" .. v
  end
  return "{" .. table.concat(order, ",") .. "}"
end

local jresource

local function jembedded(e)
  return jresource(e.value)
end

function jresource(res)
  local parts = { '"rel":' .. jstr(res.rel) }
  for _, p in ipairs(res.props) do
    parts[#parts + 1] = jstr(p[1]) .. ":" .. jvalue(p[2])
  end
  if res.href then
    parts[#parts + 1] = '"_links":' .. grouped(res.links, jlink, { rel = "self", href = res.href })
  end
  if #res.embedded > 0 then
    parts[#parts + 1] = '"_embedded":' .. grouped(res.embedded, jembedded)
  end
  return "{" .. table.concat(parts, ",") .. "}"
end
fmt.resource_json = jresource

---------------------------------------------------------------------------
-- XML writer

local xesc = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&apos;" }

-- As PLAIN_JSON: printable ASCII but for & < > " and '.
local PLAIN_XML = "^[a-~?-`(-;=#$%% !]*$"
local xmemo, xremember = memo()

local function xstr(s)
  local v = xmemo[s]
  if v then return v end
  if type(s) == "string" and s:find(PLAIN_XML) then
    return xremember(s, s)
  end
  v = fmt.clean(s)
  -- Characters XML 1.0 does not allow are dropped; the rest escaped.
  v = v:gsub("[%z\1-\8\11\12\14-\31]", "")
  v = v:gsub("[&<>\"']", xesc)
  if type(s) == "string" then xremember(s, v) end
  return v
end

local function iso8601(ms)
  local secs = ms // 1000
  return os.date("!%Y-%m-%dT%H:%M:%S", secs) .. string.format(".%03dZ", ms % 1000)
end

local function xscalar(v)
  if type(v) == "boolean" then
    return v and "True" or "False"
  elseif type(v) == "number" then
    return jnum(v)
  elseif getmetatable(v) == DATE then
    return iso8601(v.ms)
  end
  return xstr(v)
end

local function xattrs(rel, href, title)
  local s = ' rel="' .. xstr(rel) .. '"'
  if href then
    s = s .. ' href="' .. xstr(href) .. '"'
  end
  if title then
    s = s .. ' title="' .. xstr(title) .. '"'
  end
  return s
end

local function xresource(res, out, as_rel, top)
  out[#out + 1] = "<resource" .. xattrs(as_rel or res.rel, res.href)
    .. (top and (' xmlns="' .. NS .. '"') or "") .. ">"
  for _, l in ipairs(res.links) do
    if not l.empty then
      out[#out + 1] = "<link" .. xattrs(l.rel, l.href, l.title) .. "/>"
    end
  end
  out[#out + 1] = '<property name="rel">' .. xstr(res.rel) .. "</property>"
  for _, p in ipairs(res.props) do
    local name, v = p[1], p[2]
    if type(v) == "table" and getmetatable(v) ~= DATE then
      out[#out + 1] = '<propertyList name="' .. xstr(name) .. '">'
      for _, item in ipairs(v) do
        out[#out + 1] = "<item>" .. xscalar(item) .. "</item>"
      end
      out[#out + 1] = "</propertyList>"
    else
      out[#out + 1] = '<property name="' .. xstr(name) .. '">' .. xscalar(v) .. "</property>"
    end
  end
  for _, e in ipairs(res.embedded) do
    if not e.empty then
      xresource(e.value, out, e.rel)
    end
  end
  out[#out + 1] = "</resource>"
end

local XML_DECL = '<?xml version="1.0" encoding="utf-8"?>\n'

function fmt.resource_xml(res)
  local out = {}
  xresource(res, out, nil, true)
  return XML_DECL .. table.concat(out)
end

---------------------------------------------------------------------------
-- Event batches (EventsInUCWA.md, EventChannelDetails.md)
--   batch = { self=href, links = { {rel=, href=} ... },
--             senders = { {rel=, href=, events = { ev ... }} ... } }
--   ev = { type=, link={rel=,href=,title=}, ["in"]={rel=,href=}|nil,
--          resource=res|nil, status=|nil, reason={code=,subcode=,message=}|nil }

-- A property bag (an error's debugInfo, parameters) in name order.
local function bag_names(bag)
  local names = {}
  for k in pairs(bag) do names[#names + 1] = tostring(k) end
  table.sort(names)
  return names
end

local function jreason(r)
  local parts = { '"code":' .. jstr(r.code) }
  if r.subcode then
    parts[#parts + 1] = '"subcode":' .. jstr(r.subcode)
  end
  if r.message then
    parts[#parts + 1] = '"message":' .. jstr(r.message)
  end
  for _, name in ipairs({ "debugInfo", "parameters" }) do
    local bag = r[name]
    if bag then
      local items = {}
      for i, k in ipairs(bag_names(bag)) do
        items[i] = jstr(k) .. ":" .. jvalue(bag[k])
      end
      parts[#parts + 1] = jstr(name) .. ":{" .. table.concat(items, ",") .. "}"
    end
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function fmt.events_json(batch)
  local links = { '"self":' .. jlink({ href = batch.self }) }
  for _, l in ipairs(batch.links) do
    links[#links + 1] = jstr(l.rel) .. ":" .. jlink(l)
  end
  local parts = { '"_links":{' .. table.concat(links, ",") .. "}" }
  if batch.senders and #batch.senders > 0 then
    local senders = {}
    for i, s in ipairs(batch.senders) do
      local evs = {}
      for j, ev in ipairs(s.events) do
        local e = { '"link":' .. '{"rel":' .. jstr(ev.link.rel) .. ',"href":' .. jstr(ev.link.href)
          .. (ev.link.title and (',"title":' .. jstr(ev.link.title)) or "") .. "}" }
        if ev["in"] then
          e[#e + 1] = '"in":{"rel":' .. jstr(ev["in"].rel) .. ',"href":' .. jstr(ev["in"].href) .. "}"
        end
        if ev.status then
          e[#e + 1] = '"status":' .. jstr(ev.status)
        end
        if ev.reason then
          e[#e + 1] = '"reason":' .. jreason(ev.reason)
        end
        if ev.resource then
          e[#e + 1] = '"_embedded":{' .. jstr(ev.link.rel) .. ":" .. jresource(ev.resource) .. "}"
        end
        e[#e + 1] = '"type":' .. jstr(ev.type)
        evs[j] = "{" .. table.concat(e, ",") .. "}"
      end
      senders[i] = '{"rel":' .. jstr(s.rel) .. ',"href":' .. jstr(s.href)
        .. ',"events":[' .. table.concat(evs, ",") .. "]}"
    end
    parts[#parts + 1] = '"sender":[' .. table.concat(senders, ",") .. "]"
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- A <reason>; `top` gives it the namespace (an error body of its own).
local function xreason(r, top)
  local s = "<reason" .. (top and (' xmlns="' .. NS .. '"') or "") .. "><code>" .. xstr(r.code) .. "</code>"
  if r.subcode then
    s = s .. "<subcode>" .. xstr(r.subcode) .. "</subcode>"
  end
  if r.message then
    s = s .. "<message>" .. xstr(r.message) .. "</message>"
  end
  for _, name in ipairs({ "debugInfo", "parameters" }) do
    local bag = r[name]
    if bag then
      s = s .. "<" .. name .. ">"
      for _, k in ipairs(bag_names(bag)) do
        s = s .. '<property name="' .. xstr(k) .. '">' .. xscalar(bag[k]) .. "</property>"
      end
      s = s .. "</" .. name .. ">"
    end
  end
  return s .. "</reason>"
end

function fmt.events_xml(batch)
  local out = { XML_DECL, '<events href="' .. xstr(batch.self) .. '" xmlns="' .. NS .. '">' }
  for _, l in ipairs(batch.links) do
    out[#out + 1] = "<link" .. xattrs(l.rel, l.href) .. "/>"
  end
  for _, s in ipairs(batch.senders or {}) do
    out[#out + 1] = "<sender" .. xattrs(s.rel, s.href) .. ">"
    for _, ev in ipairs(s.events) do
      local open = "<" .. ev.type .. xattrs(ev.link.rel, ev.link.href, ev.link.title)
      if ev.status then
        open = open .. ' status="' .. xstr(ev.status) .. '"'
      end
      local body = {}
      if ev["in"] then
        body[#body + 1] = "<in" .. xattrs(ev["in"].rel, ev["in"].href) .. "/>"
      end
      if ev.reason then
        body[#body + 1] = xreason(ev.reason)
      end
      if ev.resource then
        local r = {}
        xresource(ev.resource, r, ev.link.rel)
        body[#body + 1] = table.concat(r)
      end
      if #body == 0 then
        out[#out + 1] = open .. "/>"
      else
        out[#out + 1] = open .. ">" .. table.concat(body) .. "</" .. ev.type .. ">"
      end
    end
    out[#out + 1] = "</sender>"
  end
  out[#out + 1] = "</events>"
  return table.concat(out)
end

---------------------------------------------------------------------------
-- Errors (ErrorsAndInformationalMessages.md: "Error sample - JSON/XML")

-- bag: nil, or { debugInfo = {name = value}, parameters = {name = value} }
-- (property bags: JSON objects, XML <property> lists).
local function reason_of(code, subcode, message, bag)
  return { code = code, subcode = subcode, message = message,
    debugInfo = bag and bag.debugInfo, parameters = bag and bag.parameters }
end

function fmt.error_json(code, subcode, message, bag)
  return jreason(reason_of(code, subcode, message, bag))
end

function fmt.error_xml(code, subcode, message, bag)
  return XML_DECL .. xreason(reason_of(code, subcode, message, bag), true)
end

---------------------------------------------------------------------------
-- Input bodies

local MAX_INPUT = 1024 * 1024

-- XML <input><property name=..>, <propertyList><item>: see fmt.parse_input.
local function parse_xml_input(body)
  local out, stack, text = {}, {}, nil
  local list_name, cur_name
  local depth = 0
  local function fail(msg)
    error({ sim_xml = msg }, 0)
  end
  local callbacks = {
    StartDoctypeDecl = function() fail("DTD not allowed") end,
    EntityDecl = function() fail("entities not allowed") end,
    StartElement = function(_, name, attrs)
      depth = depth + 1
      if depth > 16 then fail("too deep") end
      local local_name = name:match("([^|:]+)$")
      stack[#stack + 1] = local_name
      if depth == 1 and local_name ~= "input" then
        fail("root element must be <input>")
      end
      if local_name == "property" then
        cur_name = attrs.name
        text = {}
      elseif local_name == "propertyList" then
        list_name = attrs.name
        if list_name then out[list_name] = {} end
      elseif local_name == "item" then
        text = {}
      elseif local_name == "link" and depth == 2 and attrs.rel and attrs.href then
        -- links of the input (startMessaging's first message), as JSON's _links
        out._links = out._links or {}
        out._links[attrs.rel] = { href = fmt.clean(attrs.href) }
      end
    end,
    EndElement = function()
      local local_name = table.remove(stack)
      depth = depth - 1
      if local_name == "property" and cur_name and text then
        out[cur_name] = fmt.clean(table.concat(text))
        cur_name, text = nil, nil
      elseif local_name == "item" and list_name and text then
        local l = out[list_name]
        l[#l + 1] = fmt.clean(table.concat(text))
        text = nil
      elseif local_name == "propertyList" then
        list_name = nil
      end
    end,
    CharacterData = function(_, s)
      if text then text[#text + 1] = s end
    end,
  }
  local p = lxp.new(callbacks, "|")
  local ok, r1, r2 = pcall(function()
    local a, msg = p:parse(body)
    if not a then return nil, msg end
    a, msg = p:parse()
    if not a then return nil, msg end
    return true
  end)
  pcall(p.close, p) -- lxp raises again here the error of a parse that failed
  if not ok then
    if type(r1) == "table" and r1.sim_xml then
      return nil, r1.sim_xml
    end
    return nil, tostring(r1)
  end
  if not r1 then
    return nil, "malformed XML: " .. tostring(r2)
  end
  if depth ~= 0 or next(stack) then
    return nil, "malformed XML"
  end
  return out
end

-- JSON object or XML <input>: returns a table of name -> value (strings,
-- numbers, booleans, arrays), or nil, message.
function fmt.parse_input(body, content_type)
  if #body > MAX_INPUT then
    return nil, "request body too large"
  end
  if body:sub(1, 3) == "\239\187\191" then
    body = body:sub(4)
  end
  local ct = (content_type or ""):lower()
  if ct:find("xml", 1, true) then
    return parse_xml_input(body)
  end
  local v = cjson.decode(body)
  if type(v) ~= "table" or (next(v) == 1) then
    return nil, "the body is not a JSON object"
  end
  local out = {}
  for k, x in pairs(v) do
    if type(k) == "string" then
      if type(x) == "string" then
        out[k] = fmt.clean(x)
      elseif type(x) == "table" or type(x) == "number" or type(x) == "boolean" then
        out[k] = x
      end
    end
  end
  return out
end

-- Accept header -> "json" | "xml", and the content type to answer with.
function fmt.negotiate(accept)
  accept = (accept or ""):lower()
  local j = accept:find("json", 1, true)
  local x = accept:find("xml", 1, true)
  if x and (not j or x < j) then
    if accept:find("application/vnd.microsoft.com.ucwa+xml", 1, true) then
      return "xml", "application/vnd.microsoft.com.ucwa+xml; charset=utf-8"
    end
    return "xml", "application/xml; charset=utf-8"
  end
  if accept:find("application/vnd.microsoft.com.ucwa+json", 1, true) then
    return "json", "application/vnd.microsoft.com.ucwa+json; charset=utf-8"
  end
  return "json", "application/json; charset=utf-8"
end

-- The text of an HTML message, for its plainMessage form.
function fmt.strip_html(s)
  return (s:gsub("<[^>]*>", ""):gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("&quot;", '"'):gsub("&amp;", "&"))
end

---------------------------------------------------------------------------
-- Plain JSON (the control API).  lua-cjson 2.1 writes an empty table as {}:
-- lists that may be empty are marked with fmt.array so they stay [].

local ARRAY = {}

-- Marks `list` (default a new one) as a JSON array; returns it.
function fmt.array(list)
  return setmetatable(list or {}, ARRAY)
end

local function is_sequence(t)
  return t[1] ~= nil and next(t, #t) == nil
end

-- Has the table no table in it?
local function flat(t)
  for _, x in pairs(t) do
    if type(x) == "table" then return false end
  end
  return true
end

-- Scalars and flat tables go to lua-cjson whole (as it would write them);
-- the rest is written here, so that lists marked with fmt.array stay
-- arrays when they are empty.
local function jplain(v, out)
  local array = type(v) == "table" and getmetatable(v) == ARRAY
  if type(v) ~= "table" or (not array and next(v) == nil) or (next(v) ~= nil and flat(v)) then
    out[#out + 1] = cjson.encode(v)
  elseif array or is_sequence(v) then
    out[#out + 1] = "["
    for i, x in ipairs(v) do
      if i > 1 then out[#out + 1] = "," end
      jplain(x, out)
    end
    out[#out + 1] = "]"
  else
    out[#out + 1] = "{"
    local first = true
    for k, x in pairs(v) do
      if not first then out[#out + 1] = "," end
      first = false
      out[#out + 1] = cjson.encode(tostring(k))
      out[#out + 1] = ":"
      jplain(x, out)
    end
    out[#out + 1] = "}"
  end
end

-- A Lua value as JSON: sequences and fmt.array lists as arrays (empty
-- ones too), other tables as objects.
function fmt.json(v)
  local out = {}
  jplain(v, out)
  return table.concat(out)
end

-- Percent-encoding for data: URIs (RFC 2397, form style like UCWA: "Hi+Tosh%0d%0a").
function fmt.urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c)
    if c == " " then return "+" end
    return string.format("%%%02X", c:byte())
  end))
end

return fmt
