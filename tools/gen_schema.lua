#!/usr/bin/env lua5.4
--- Generates src/schema.h: property types and collection rels of UCWA 2.0,
-- derived from the JSON (and XML) samples of the reference pages.
--
--   lua5.4 tools/gen_schema.lua DOCS_DIR OUT.h [FIXTURES_DIR]
--
-- DOCS_DIR is ../shared/ucwa-docs (the reference pages); FIXTURES_DIR defaults
-- to DOCS_DIR/../fixtures/ucwa-docs (the samples cut out of those pages, with
-- manifest.json). The XML parser of ucwa.core uses the output to type property
-- values and to shape links/embedded resources exactly as the JSON of the same
-- resource would be shaped. The output is committed: users do not have the docs.
local cjson = require "cjson"
-- reading the samples: the helper the parse specs use (spec/support/fixtures.lua)
package.path = (arg[0]:match("^(.*)/tools/[^/]+$") or ".") .. "/spec/?.lua;" .. package.path
local F = require "support.fixtures"

local docs = arg[1] or "../shared/ucwa-docs"
local out = arg[2] or "src/schema.h"
local fixtures = arg[3] or (docs:gsub("/+$", "") .. "/../fixtures/ucwa-docs")
local read, html_unescape = F.read, F.html_unescape

-- prop[name][rel] = { set of kinds }; kinds: bool number string list:<item>
local prop = {}
-- shape[key][parent] = { one = true, list = true }
local shape = {}
local null = cjson.null

local function kind_of(v)
  local t = type(v)
  if t == "boolean" then return "bool" end
  if t == "number" then return "number" end
  if t == "string" then return "string" end
  if v == null then return "null" end
  if t == "table" then
    if next(v) == nil or rawlen(v) > 0 then
      local item
      for _, x in ipairs(v) do
        local k = kind_of(x)
        if k ~= "null" then
          if item and item ~= k then item = "string" else item = k end
        end
      end
      return "list:" .. (item or "null")
    end
    return "object"
  end
  return "string"
end

-- t[a][b][c] = true
local function note(t, a, b, c)
  t[a] = t[a] or {}
  t[a][b] = t[a][b] or {}
  t[a][b][c] = true
end

local function note_prop(rel, name, kind) note(prop, name, rel, kind) end
local function note_shape(parent, key, what) note(shape, key, parent, what) end

local walk

local function walk_items(v, key)
  if type(v) ~= "table" then return end
  if rawlen(v) > 0 then
    for _, x in ipairs(v) do walk(x, key) end
  else
    walk(v, key)
  end
end

function walk(o, rel)
  if type(o) ~= "table" then return end
  local own = type(o.rel) == "string" and o.rel or rel or ""
  for k, v in pairs(o) do
    if k == "_links" and type(v) == "table" then
      for lk, lv in pairs(v) do
        if lk ~= "self" and type(lv) == "table" then
          note_shape(own, lk, rawlen(lv) > 0 and "list" or "one")
        end
      end
    elseif k == "_embedded" and type(v) == "table" then
      for ek, ev in pairs(v) do
        if type(ev) == "table" then
          note_shape(own, ek, rawlen(ev) > 0 and "list" or "one")
          walk_items(ev, ek)
        end
      end
    elseif k == "sender" and type(v) == "table" then
      -- an event batch: walk the resources embedded in its events
      for _, s in ipairs(v) do
        for _, e in ipairs(type(s) == "table" and s.events or {}) do
          for ek, ev in pairs(type(e) == "table" and e._embedded or {}) do walk_items(ev, ek) end
        end
      end
    elseif k ~= "rel" then
      local kind = kind_of(v)
      if kind ~= "null" and kind ~= "object" then note_prop(own, k, kind) end
      if kind == "list:object" then
        for _, x in ipairs(v) do walk(x, own) end
      end
    end
  end
end

local manifest = cjson.decode(read(fixtures .. "/manifest.json"))
local njson, nxml = 0, 0
for _, e in ipairs(manifest) do
  if e.file:match("%.json$") then
    local body = read(fixtures .. "/" .. e.file)
    local ok, obj = pcall(cjson.decode, body)
    if not ok and e.html_escaped then ok, obj = pcall(cjson.decode, html_unescape(body)) end
    if ok then
      njson = njson + 1
      walk(obj, type(e.body_rel) == "string" and e.body_rel or e.resource)
    end
  elseif e.file:match("%.xml$") then
    -- XML samples add the propertyList names that no JSON sample shows.
    local body = read(fixtures .. "/" .. e.file)
    if e.html_escaped then body = html_unescape(body) end
    nxml = nxml + 1
    local rel = type(e.body_rel) == "string" and e.body_rel or e.resource
    for name in body:gmatch('<propertyList%s+name="([^"]+)"') do
      if not prop[name] then note_prop(rel, name, "list:string") end
    end
  end
end

-- The docs themselves: every *_ref.md page names its properties in a table.
-- Properties documented but absent from every sample stay untyped (string).
local pages = 0
local p = io.popen('ls "' .. docs .. '"')
for file in p:lines() do
  if file:match("_ref%.md$") then pages = pages + 1 end
end
p:close()

-- Resolve kinds into C types.
local function resolve(kinds)
  local list, scalar = nil, {}
  for k in pairs(kinds) do
    local item = k:match("^list:(.*)$")
    if item then
      if list and list ~= item then list = "string" else list = list or item end
    else
      scalar[k] = true
    end
  end
  if list then
    if list == "null" then list = "string" end
    return "LIST", list
  end
  local n = 0
  for _ in pairs(scalar) do n = n + 1 end
  if n == 1 then
    if scalar.bool then return "BOOL" end
    if scalar.number then return "NUMBER" end
  end
  return "STRING"
end

local ctype = { string = "STRING", bool = "BOOL", number = "NUMBER", object = "OBJECT", null = "STRING" }

local props = {}
for name, rels in pairs(prop) do
  local all = {}
  for _, kinds in pairs(rels) do for k in pairs(kinds) do all[k] = true end end
  local t, item = resolve(all)
  local consistent = true
  for _, kinds in pairs(rels) do
    local rt, ritem = resolve(kinds)
    if rt ~= t or ritem ~= item then consistent = false end
  end
  if consistent then
    props[#props + 1] = { name, "", t, item }
  else
    -- Resources disagree: the type most of them give applies to any other
    -- resource (ties: string), the others are listed by rel. Typing as a
    -- number or boolean only happens when the text reads as one.
    local votes, best, best_n, tie = {}, nil, 0, false
    for _, kinds in pairs(rels) do
      local rt, ritem = resolve(kinds)
      local key = rt .. ":" .. (ritem or "")
      votes[key] = (votes[key] or 0) + 1
    end
    for key, n in pairs(votes) do
      if n > best_n then best, best_n, tie = key, n, false
      elseif n == best_n then tie = true end
    end
    if tie then best = "STRING:" end
    local gt, gitem = best:match("^(%u+):(.*)$")
    props[#props + 1] = { name, "", gt, gitem ~= "" and gitem or nil }
    for rel, kinds in pairs(rels) do
      local rt, ritem = resolve(kinds)
      if rt .. ":" .. (ritem or "") ~= best then props[#props + 1] = { name, rel, rt, ritem } end
    end
  end
end
-- Entries sorted by their first two strings, as the C lookups want them.
local function by_two(a, b)
  if a[1] ~= b[1] then return a[1] < b[1] end
  return a[2] < b[2]
end
table.sort(props, by_two)

local colls = {}
for key, parents in pairs(shape) do
  local any_list, any_one = false, false
  for _, w in pairs(parents) do
    if w.list then any_list = true end
    if w.one then any_one = true end
  end
  -- Only collections are listed: a rel seen as one link is shaped by count.
  if any_list and not any_one then
    colls[#colls + 1] = { key, "" }
  elseif any_list then
    for parent, w in pairs(parents) do
      if w.list then colls[#colls + 1] = { key, parent } end
    end
  end
end
table.sort(colls, by_two)

local function cstr(s)
  return '"' .. s:gsub('[\\"]', "\\%0"):gsub("[^\32-\126]", function(c)
    return string.format("\\%03o", c:byte())
  end) .. '"'
end

local h = {}
local function emit(...)
  for _, line in ipairs{ ... } do h[#h + 1] = line end
end
-- A C table: the lines before its entries (comment, typedef, declaration),
-- one line per entry, then its end.
local function c_table(head, entries, line)
  emit(table.unpack(head))
  for _, e in ipairs(entries) do emit(line(e)) end
  emit("};", "")
end

emit("/* Generated by tools/gen_schema.lua from the UCWA 2.0 reference samples",
  string.format(" * (%d JSON and %d XML sample bodies, %d reference pages). Do not edit: run `make schema`.",
    njson, nxml, pages),
  " * Source: OfficeDev/skype-docs, Skype/UCWA (CC BY 4.0 / MIT). */",
  "#ifndef UCWA_SCHEMA_H",
  "#define UCWA_SCHEMA_H",
  "",
  "enum { UCWA_T_STRING, UCWA_T_BOOL, UCWA_T_NUMBER, UCWA_T_LIST, UCWA_T_OBJECT };",
  "")
c_table({ "/* Property types: sorted by (name, rel); rel \"\" applies to any resource. */",
  "typedef struct { const char *name, *rel; unsigned char type, item; } ucwa_prop_type;",
  "static const ucwa_prop_type ucwa_prop_types[] = {" }, props, function(e)
  return string.format("    { %s, %s, UCWA_T_%s, UCWA_T_%s },", cstr(e[1]), cstr(e[2]), e[3],
    e[4] and ctype[e[4]] or "STRING")
end)
c_table({ "/* Collection rels: links and embedded resources that are arrays even when they hold",
  " * one item; sorted by (rel, parent); parent \"\" applies to any resource. */",
  "typedef struct { const char *rel, *parent; } ucwa_coll_rel;",
  "static const ucwa_coll_rel ucwa_coll_rels[] = {" }, colls, function(e)
  return string.format("    { %s, %s },", cstr(e[1]), cstr(e[2]))
end)
emit("#endif", "")

local f = assert(io.open(out, "wb"))
f:write(table.concat(h, "\n"))
f:close()
io.stderr:write(string.format("gen_schema: %d property entries, %d rel entries -> %s\n", #props, #colls, out))
