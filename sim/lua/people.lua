-- ucwa-sim: the people of the directory as UCWA serves them (people_ref.md,
-- search_ref.md, contact_ref.md and its contactPresence / contactNote /
-- contactLocation / contactSupportedModalities / contactPhoto, myContacts_ref.md,
-- myGroups_ref.md, group_ref.md, groupContacts_ref.md), presence
-- subscriptions (presenceSubscriptions_ref.md and the pages it links), and
-- the user's own presence, note and location under <app>/me.
--
-- Contacts live at <app>/people/<username>; photos at <app>/photos/<username>
-- are small generated bitmaps (a colour of the user's own).  The state is
-- presence.lua's; this module turns it into resources and requests into it.
local directory = require "directory"
local fmt = require "formats"
local plants = require "plants"
local presence = require "presence"
local reply = require "reply"

local M = {}

M.MAX_QUERY, M.MAX_LIMIT = 256, 100 -- search_ref.md

---------------------------------------------------------------------------
-- resources

local function origin_of(href)
  return href:match("^%a[%w+.-]*://[^/]*") or ""
end

-- A contact (contact_ref.md); its links may be planted to another host.
local function contact_resource(ctx, app, u)
  local path = app.href .. "/people/" .. u.username
  local self = plants.href("contact", path, ctx.host)
  local res = fmt.resource("contact", self)
    :prop("uri", u.uri)
    :prop("sourceNetwork", "SameEnterprise")
    :prop("company", u.company)
    :prop("department", u.department)
    :prop("office", u.office)
    :prop("title", u.title)
    :prop("emailAddresses", { u.username })
    :prop("workPhoneNumber", u.phone)
    :prop("type", "User")
    :prop("name", u.name)
  res:link("contactPhoto", origin_of(self) .. app.href .. "/photos/" .. u.username)
    :link("contactPresence", self .. "/presence")
    :link("contactLocation", self .. "/location")
    :link("contactNote", self .. "/note")
    :link("contactSupportedModalities", self .. "/supportedMedia")
  return res
end

local function contacts_of(ctx, app, list)
  local out = {}
  for i, u in ipairs(list) do out[i] = contact_resource(ctx, app, u) end
  return out
end

-- A collection of contacts: `contact` links and the contacts embedded.
local function contact_collection(ctx, app, rel, href, list)
  local res = fmt.resource(rel, href)
  local contacts = contacts_of(ctx, app, list)
  local links = {}
  for i, c in ipairs(contacts) do links[i] = { href = c.href } end
  return res:link_list("contact", links):embed_list("contact", contacts)
end

local function group_href(app, g)
  return app.href .. "/people/groups/" .. g.id
end

local function group_resource(app, g)
  local h = group_href(app, g)
  return fmt.resource("group", h)
    :prop("id", g.id)
    :prop("name", g.name)
    :link("groupContacts", h .. "/contacts")
    :link("subscribeToGroupPresence", app.href .. "/people/presenceSubscriptions?groupId=" .. g.id)
end

local function my_groups(app)
  local h = app.href .. "/people/groups"
  local groups = {}
  for i, g in ipairs(directory.groups_of(app.user)) do groups[i] = group_resource(app, g) end
  local links = {}
  for i, g in ipairs(groups) do links[i] = { href = g.href } end
  return fmt.resource("myGroups", h):link_list("group", links):embed_list("group", groups)
end

-- Everyone in the user's groups, once each, in order.
local function my_contacts(app)
  local seen, list = {}, {}
  for _, g in ipairs(directory.groups_of(app.user)) do
    for _, u in ipairs(g.members) do
      if not seen[u] then seen[u] = true; list[#list + 1] = u end
    end
  end
  return list
end

local function subscription_resource(sub)
  local h = presence.href(sub)
  return fmt.resource("presenceSubscription", h)
    :prop("id", sub.id)
    :link("addToPresenceSubscription", h .. "/memberships")
    :link("memberships", h .. "/memberships")
end

local function membership_resource(app, sub, username)
  local h = presence.href(sub)
  return fmt.resource("presenceSubscriptionMembership", h .. "/memberships/" .. username)
    :link("contact", app.href .. "/people/" .. username)
    :link("presenceSubscription", h)
end

local function memberships_resource(app, sub)
  local list = {}
  for i, name in ipairs(sub.order) do list[i] = membership_resource(app, sub, name) end
  return fmt.resource("presenceSubscriptionMemberships", presence.href(sub) .. "/memberships")
    :embed_list("presenceSubscriptionMembership", list)
end

---------------------------------------------------------------------------
-- photos: a 16x16 24-bit BMP in the user's colour, a darker frame around it

local function colour_of(name)
  local h = 5381
  for i = 1, #name do h = (h * 33 + name:byte(i)) % 16777216 end
  return h >> 16 & 255, h >> 8 & 255, h & 255
end

function M.photo(username)
  local w, hgt = 16, 16
  local r, g, b = colour_of(username)
  local inner = string.char(b, g, r)
  local frame = string.char(b // 2, g // 2, r // 2)
  local rows = {}
  for y = 1, hgt do
    local row = {}
    for x = 1, w do
      row[x] = (x <= 2 or y <= 2 or x > w - 2 or y > hgt - 2) and frame or inner
    end
    rows[y] = table.concat(row)
  end
  local pixels = table.concat(rows) -- rows of 48 bytes: already 4-byte aligned
  local header = string.pack("<c2I4I2I2I4", "BM", 54 + #pixels, 0, 0, 54)
  local info = string.pack("<I4i4i4I2I2I4I4i4i4I4I4", 40, w, hgt, 1, 24, 0, #pixels, 2835, 2835, 0, 0)
  return header .. info .. pixels
end

M.PHOTO_TYPE = "image/bmp"

---------------------------------------------------------------------------
-- routes

local function user_or_404(ctx, name)
  local u = directory.user(name)
  if not u then return nil, { reply.not_found(ctx) } end
  return u
end

-- GET <app>/people/search?query=&limit=
local function search(ctx, app)
  local q = ctx.req.query
  local query = q.query
  if type(query) ~= "string" or query == "" or #query > M.MAX_QUERY then
    return reply.bad_parameter(ctx, "query is required (at most " .. M.MAX_QUERY .. " characters).", "query")
  end
  local limit = M.MAX_LIMIT
  if q.limit ~= nil then
    limit = tonumber(q.limit)
    if not limit or limit ~= math.floor(limit) or limit < 1 or limit > M.MAX_LIMIT then
      return reply.bad_parameter(ctx, "limit must be 1 to " .. M.MAX_LIMIT .. ".", "limit")
    end
  end
  local needle = query:lower():gsub("^sip:", "")
  local found = {}
  for _, u in ipairs(directory.list()) do
    if u.name:lower():find(needle, 1, true) or u.username:find(needle, 1, true) then
      found[#found + 1] = u
    end
  end
  local more = #found > limit
  while #found > limit do table.remove(found) end
  local res = fmt.resource("search", app.href .. "/people/search")
    :prop("moreResultsAvailable", more)
    :embed_list("contact", contacts_of(ctx, app, found))
  return reply.resource(ctx, 200, res)
end

-- The user names of a subscription request: `uris` (or `contactUris`), quotes
-- and "sip:" taken off; nil and a message when it is not a list of strings.
local function uris_of(input)
  local list = reply.field(input, "uris") or reply.field(input, "contactUris")
  if type(list) == "string" then list = { list } end
  if type(list) ~= "table" or #list > presence.MAX_MEMBERS then
    return nil, "uris must be a list of at most " .. presence.MAX_MEMBERS .. " SIP URIs."
  end
  local out = {}
  for i, s in ipairs(list) do
    if type(s) ~= "string" then return nil, "uris must be SIP URIs." end
    out[i] = directory.normalize((s:gsub('[%s"]', "")))
  end
  return out
end

local function usernames(list)
  local out = {}
  for i, u in ipairs(list) do out[i] = u.username end
  return out
end

-- POST <app>/people/presenceSubscriptions {duration, uris} (or ?groupId=&duration=)
local function subscribe(ctx, app)
  local input, refusal = reply.input(ctx, true)
  if not input then return table.unpack(refusal) end
  local q = ctx.req.query
  local minutes, why = presence.duration(q.duration or reply.field(input, "duration"))
  if not minutes then return reply.bad_parameter(ctx, why, "duration") end
  local names
  if q.groupId then
    for _, g in ipairs(directory.groups_of(app.user)) do
      if g.id == q.groupId then names = usernames(g.members) end
    end
    if not names then return reply.not_found(ctx) end
  else
    names, why = uris_of(input)
    if not names then return reply.bad_parameter(ctx, why, "uris") end
  end
  local sub = presence.subscribe(app, names, minutes)
  if not sub then
    return reply.error(ctx, 403, "Forbidden", "LimitExceeded",
      "The user has reached the maximum number of subscriptions that can be created.")
  end
  return reply.resource(ctx, 201, subscription_resource(sub), { Location = presence.href(sub) })
end

-- <app>/people/presenceSubscriptions/<id><rest>
local function subscription_route(ctx, app, sub, rest)
  if rest == "" then
    return reply.by_method(ctx, {
      GET = function() return reply.resource(ctx, 200, subscription_resource(sub)) end,
      POST = function()
        local minutes, why = presence.duration(ctx.req.query.duration)
        if not minutes then return reply.bad_parameter(ctx, why, "duration") end
        presence.extend(sub, minutes)
        return reply.no_content()
      end,
      DELETE = function()
        presence.delete(sub)
        return reply.no_content()
      end,
    })
  elseif rest == "/memberships" then
    return reply.by_method(ctx, {
      GET = function() return reply.resource(ctx, 200, memberships_resource(app, sub)) end,
      POST = function()
        local input, refusal = reply.input(ctx)
        if not input then return table.unpack(refusal) end
        local names, why = uris_of(input)
        if not names then return reply.bad_parameter(ctx, why, "contactUris") end
        presence.add(sub, names)
        return reply.resource(ctx, 200, memberships_resource(app, sub))
      end,
    })
  end
  local member = rest:match("^/memberships/([^/]+)$")
  if member and sub.members[directory.normalize(member)] then
    return reply.by_method(ctx, {
      GET = function() return reply.resource(ctx, 200, membership_resource(app, sub, directory.normalize(member))) end,
      DELETE = function()
        presence.remove(sub, member)
        return reply.no_content()
      end,
    })
  end
  return reply.not_found(ctx)
end

-- <app>/people/<username><rest>: a contact and its parts
local function contact_route(ctx, app, u, rest)
  local s = presence.state(u.username)
  if rest == "" then
    return reply.get_only(ctx, function() return contact_resource(ctx, app, u) end)
  end
  local href = app.href .. "/people/" .. u.username .. rest
  if rest == "/presence" then
    return reply.get_only(ctx, function()
      local res = fmt.resource("contactPresence", href):prop("availability", s.availability)
        :prop("activity", s.activity)
      if s.signed_in then res:prop("deviceType", "PC") end
      return res:prop("lastActive", fmt.date(s.last_active))
    end)
  elseif rest == "/note" then
    return reply.get_only(ctx, function()
      return fmt.resource("contactNote", href):prop("message", s.note):prop("type", "Personal")
    end)
  elseif rest == "/location" then
    return reply.get_only(ctx, function() return fmt.resource("contactLocation", href):prop("location", s.location) end)
  elseif rest == "/supportedMedia" then
    return reply.get_only(ctx, function()
      return fmt.resource("contactSupportedModalities", href)
        :prop("modalities", s.signed_in and { "Messaging" } or {})
    end)
  end
  return reply.not_found(ctx)
end

-- Everything under <app>/people/ and <app>/photos/ (rest: the path after <app>).
function M.route(ctx, app, rest)
  local photo = rest:match("^/photos/([^/]+)$")
  if photo then
    local u, refusal = user_or_404(ctx, photo)
    if not u then return table.unpack(refusal) end
    return reply.only(ctx, "GET", function() return 200, reply.headers(M.PHOTO_TYPE), M.photo(u.username) end)
  end
  local p = rest:match("^/people(/.*)$")
  if not p then return reply.not_found(ctx) end
  if p == "/search" then return reply.only(ctx, "GET", search, ctx, app) end
  if p == "/contacts" then
    return reply.get_only(ctx, function()
      return contact_collection(ctx, app, "myContacts", app.href .. "/people/contacts", my_contacts(app))
    end)
  end
  if p == "/subscribedContacts" then
    return reply.get_only(ctx, function()
      local list = {}
      for _, n in ipairs(presence.subscribed(app)) do list[#list + 1] = directory.user(n) end
      return contact_collection(ctx, app, "subscribedContacts", app.href .. "/people/subscribedContacts", list)
    end)
  end
  if p == "/groups" then return reply.get_only(ctx, function() return my_groups(app) end) end
  local gid, grest = p:match("^/groups/([^/]+)(.*)$")
  if gid then
    for _, g in ipairs(directory.groups_of(app.user)) do
      if g.id == gid and grest == "" then
        return reply.get_only(ctx, function() return group_resource(app, g) end)
      elseif g.id == gid and grest == "/contacts" then
        return reply.get_only(ctx, function()
          return contact_collection(ctx, app, "groupContacts", group_href(app, g) .. "/contacts", g.members)
        end)
      end
    end
    return reply.not_found(ctx)
  end
  if p == "/presenceSubscriptions" then return reply.only(ctx, "POST", subscribe, ctx, app) end
  local sid, srest = p:match("^/presenceSubscriptions/([^/]+)(.*)$")
  if sid then
    local sub = presence.get(app, sid)
    if not sub then return reply.not_found(ctx) end
    return subscription_route(ctx, app, sub, srest)
  end
  local name, crest = p:match("^/([^/]+)(.*)$")
  local u = name and directory.user(name)
  if u then return contact_route(ctx, app, u, crest) end
  return reply.not_found(ctx)
end

---------------------------------------------------------------------------
-- <app>/me/presence, /me/note, /me/location (only once available)

local function posted(ctx, apply)
  local input, refusal = reply.input(ctx, true)
  if not input then return table.unpack(refusal) end
  local bad, name = apply(input)
  if bad then return reply.bad_parameter(ctx, bad, name) end
  return reply.no_content()
end

-- The parts of `me` this module serves.
M.ME_PARTS = { presence = true, note = true, location = true }

-- <app>/me/<part>, part one of M.ME_PARTS.
function M.me_route(ctx, app, part)
  if not app.available then
    return reply.error(ctx, 409, "Conflict", "MakeMeAvailableRequired", "makeMeAvailable is required first.")
  end
  local username = app.user.username
  local href = app.href .. "/me/" .. part
  local s = presence.state(username)
  local handlers = {}
  if part == "presence" then
    handlers.GET = function()
      return reply.resource(ctx, 200, fmt.resource("presence", href):prop("availability", s.availability)
        :prop("activity", s.activity))
    end
    handlers.POST = function()
      return posted(ctx, function(input)
        local a = reply.field(input, "availability")
        if a == nil or a == "" then a = "Online" end -- an empty body resets
        if not presence.SETTABLE[a] then
          return "availability must be Online, Busy, DoNotDisturb, BeRightBack, Away or Offwork.", "availability"
        end
        presence.set(username, a)
      end)
    end
  elseif part == "note" then
    handlers.GET = function()
      return reply.resource(ctx, 200, fmt.resource("note", href):prop("message", s.note):prop("type", "Personal"))
    end
    handlers.POST = function()
      return posted(ctx, function(input)
        local m = ctx.req.query.message or reply.field(input, "message") or ""
        if type(m) ~= "string" or #m > presence.MAX_NOTE then
          return "message must be a string of at most " .. presence.MAX_NOTE .. " bytes.", "message"
        end
        presence.set_text(username, "note", m)
      end)
    end
  else
    handlers.GET = function()
      return reply.resource(ctx, 200, fmt.resource("location", href):prop("location", s.location))
    end
    handlers.POST = function()
      return posted(ctx, function(input)
        local l = reply.field(input, "location") or ""
        if type(l) ~= "string" or (utf8.len(l) or #l) > presence.MAX_LOCATION then
          return "location must be at most " .. presence.MAX_LOCATION .. " characters.", "location"
        end
        presence.set_text(username, "location", l)
      end)
    end
  end
  return reply.by_method(ctx, handlers)
end

return M
