--- The application resource (`client.application`), kept lean: a fleet of
-- bots on one server holds thousands of applications of the same shape,
-- whose links differ only in the application's own href
-- (`/ucwa/oauth/v1/applications/101/people/search`). Each link is kept as
-- its href's tail after the application's href, in a template shared by
-- every application with the same links (issue 16: 8.4 KB a bot before,
-- the largest piece of a signed-in bot's Lua heap).
--
-- `app.links` and `app.embedded` stay readable as before
-- (`app.links.events.href`, `app.embedded.me.links.makeMeAvailable.href`,
-- `pairs`); each read makes the small tables it returns. What is not kept:
-- the embedded resources' properties (`client:me()` reads `me`'s) and
-- resources embedded two levels down. Option `application_model = "full"`
-- keeps the model as the server sent it; `app:refresh()` reads it again.
-- @module ucwa.application
local resource = require "ucwa.resource"

local application = {}

-- Private keys of the proxies: tables, so no rel (a string) meets them.
local BASE, TPL, OWN = {}, {}, {}

-- Interned templates, by their links' text; weak: gone with their last bot.
local interned = setmetatable({}, { __mode = "v" })
local function intern(sig, make)
  local t = interned[sig]
  if not t then t = make(); interned[sig] = t end
  return t
end

local find, byte, sub = string.find, string.byte, string.sub

-- The tail of `href` after `base` ("/people/search", "?ack=1", ""), or nil
-- when it is not below the application.
local function tail(href, base)
  if type(href) ~= "string" or find(href, base, 1, true) ~= 1 then return nil end
  local c = byte(href, #base + 1)
  if c == nil or c == 47 or c == 63 then return sub(href, #base + 1) end -- "/", "?"
end

-- A link a template can hold: a table with only an href below the application.
local function link_tail(l, base)
  if type(l) ~= "table" or next(l, next(l)) ~= nil then return nil end
  return tail(l.href, base)
end

-- The template of a links table (rel -> tail) and its text, or nil when one
-- link is not a plain link below the application.
local function links_template(links, base)
  local rels, tails, n = {}, {}, 0
  for rel, l in pairs(links or {}) do
    local tl = type(rel) == "string" and link_tail(l, base)
    if not tl then return nil end
    n = n + 1
    rels[n], tails[rel] = rel, tl
  end
  table.sort(rels)
  for i, rel in ipairs(rels) do rels[i] = rel .. "\0" .. tails[rel] end
  local sig = table.concat(rels, "\0")
  return intern("L\0" .. sig, function() return tails end), sig
end

local Links = {}
function Links.__index(t, rel)
  local tl = rawget(t, TPL)[rel]
  if tl then return { href = rawget(t, BASE) .. tl } end
end
function Links.__newindex(t, rel, l)
  -- a link set by hand: the proxy becomes a plain table of its own
  local own = {}
  for k, v in Links.__pairs(t) do own[k] = v end
  own[rel] = l
  rawset(t, BASE, nil)
  rawset(t, TPL, nil)
  setmetatable(t, nil)
  for k, v in pairs(own) do rawset(t, k, v) end
end
function Links.__pairs(t)
  local tpl, base = rawget(t, TPL), rawget(t, BASE)
  return function(_, k)
    local rel, tl = next(tpl, k)
    if rel then return rel, { href = base .. tl } end
  end, t, nil
end

local function links_proxy(tpl, base)
  return setmetatable({ [BASE] = base, [TPL] = tpl }, Links)
end

-- The template of an embedded resource: its rel, its href's tail, its links'
-- template; nil when it cannot be one (links elsewhere, resources inside).
local function embedded_template(model, base)
  if type(model) ~= "table" or (model.embedded and next(model.embedded)) then return nil end
  local self_tail = tail(model.href, base)
  if not self_tail or type(model.rel) ~= "string" then return nil end
  local links, sig = links_template(model.links, base)
  if not links then return nil end
  return intern("E\0" .. model.rel .. "\0" .. self_tail .. "\0" .. sig, function()
    return { rel = model.rel, tail = self_tail, links = links }
  end)
end

-- An embedded resource read from its template.
local function embedded_model(tpl, base)
  return { rel = tpl.rel, href = base .. tpl.tail, links = links_proxy(tpl.links, base), properties = {} }
end

local Embedded = {}
function Embedded.__index(t, name)
  local own = rawget(t, OWN)
  local v = own and own[name]
  if v == nil then v = rawget(t, TPL)[name] end
  if not v then return nil end
  if v.tail then return embedded_model(v, rawget(t, BASE)) end
  return v
end
function Embedded.__newindex(t, name, model)
  -- `me` read again after makeMeAvailable: kept lean too, for this bot only
  local own = rawget(t, OWN)
  if not own then own = {}; rawset(t, OWN, own) end
  if model == nil then own[name] = false; return end
  own[name] = embedded_template(model, rawget(t, BASE)) or model
end
function Embedded.__pairs(t)
  local tpl, own = rawget(t, TPL), rawget(t, OWN) or {}
  local names = {}
  for k in pairs(tpl) do if own[k] == nil then names[#names + 1] = k end end
  for k, v in pairs(own) do if v then names[#names + 1] = k end end
  local i = 0
  return function()
    i = i + 1
    local k = names[i]
    if k then return k, t[k] end
  end, t, nil
end

-- The number of entries of each template (weak: it goes with the template).
local sizes = setmetatable({}, { __mode = "k" })
local function size(t)
  local n = sizes[t]
  if not n then
    n = 0
    for _ in pairs(t) do n = n + 1 end
    sizes[t] = n
  end
  return n
end

-- Whether `links` are exactly the links of template `tpl` below `base`,
-- compared in place (no string made): the fast path for the next
-- application of a shape already seen.
local function links_match(links, tpl, base, nb)
  local n = 0
  for rel, l in pairs(links or {}) do
    local t = tpl[rel]
    local href = type(l) == "table" and l.href
    if not t or type(href) ~= "string" or next(l, next(l)) ~= nil or #href ~= nb + #t
       or find(href, base, 1, true) ~= 1 or (t ~= "" and find(href, t, nb + 1, true) ~= nb + 1) then
      return false
    end
    n = n + 1
  end
  return n == size(tpl)
end

local function embedded_match(e, tpl, base, nb)
  return type(e) == "table" and e.rel == tpl.rel and not (e.embedded and next(e.embedded))
    and type(e.href) == "string" and #e.href == nb + #tpl.tail and find(e.href, base, 1, true) == 1
    and (tpl.tail == "" or find(e.href, tpl.tail, nb + 1, true) == nb + 1)
    and links_match(e.links, tpl.links, base, nb)
end

-- The templates of the last application made lean: most are of the same shape.
local last = setmetatable({}, { __mode = "v" })

local function matches_last(model, base)
  local links, emb = last.links, last.emb
  if not (links and emb) then return false end
  local nb = #base
  if not links_match(model.links, links, base, nb) then return false end
  local n = 0
  for name, e in pairs(model.embedded or {}) do
    local tpl = emb[name]
    if not (tpl and embedded_match(e, tpl, base, nb)) then return false end
    n = n + 1
  end
  return n == size(emb)
end

-- The lean form of a model's links and embedded resources, or nil when its
-- links cannot be templates (then the model stays as the server sent it).
local function lean(model)
  local base = model.href
  if type(base) ~= "string" then return nil end
  if matches_last(model, base) then
    return links_proxy(last.links, base), setmetatable({ [BASE] = base, [TPL] = last.emb }, Embedded)
  end
  local links = links_template(model.links, base)
  if not links then return nil end
  local emb, sigs = {}, {}
  for name, e in pairs(model.embedded or {}) do
    local tpl = type(name) == "string" and embedded_template(e, base)
    if not tpl then return nil end
    emb[name] = tpl
    sigs[#sigs + 1] = name
  end
  table.sort(sigs)
  for i, name in ipairs(sigs) do sigs[i] = name .. "\0" .. tostring(emb[name]) end
  emb = intern("M\0" .. table.concat(sigs, "\0"), function() return emb end)
  last.links, last.emb = links, emb
  return links_proxy(links, base), setmetatable({ [BASE] = base, [TPL] = emb }, Embedded)
end

local Application = resource.class("application")

-- Takes a fresh representation, lean unless the bot asked for it whole.
function Application:_update(model)
  resource.Resource._update(self, model)
  local session = self._session
  if session.options.application_model == "full" then return end
  local links, embedded = lean(self)
  if links then self.links, self.embedded = links, embedded end
end

resource.register("application", Application)

--- A plain copy of a model's links and embedded resources (no proxies):
-- what a store encodes.
-- @tparam table obj
-- @treturn table links
-- @treturn table embedded
function application.plain(obj)
  local links, embedded = {}, {}
  for k, v in pairs(obj.links or {}) do links[k] = v end
  for k, v in pairs(obj.embedded or {}) do
    local e = {}
    for ek, ev in pairs(v) do e[ek] = ev end
    if getmetatable(e.links) == Links then
      local l = {}
      for rel, x in pairs(e.links) do l[rel] = x end
      e.links = l
    end
    embedded[k] = e
  end
  return links, embedded
end

return application
