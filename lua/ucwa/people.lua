--- Other people: contacts, search, the contact list and its groups
-- (people_ref.md, SearchForUsersContact.md, contact_ref.md,
-- contactPresence_ref.md, contactNote_ref.md, contactLocation_ref.md,
-- contactSupportedModalities_ref.md, contactPhoto_ref.md, myContacts_ref.md,
-- myGroups_ref.md, group_ref.md, groupContacts_ref.md).
--
-- A contact object has the contact_ref.md properties by name
-- (`c.name`, `c.uri`, `c.title`, `c.department`, `c.emailAddresses` ...) and
-- reads its parts with a GET each. Callbacks (`c:on(name, fn)`):
--
-- * `presence`: `fn(contact, presence)` once per change of the contact's
--   presence the event channel reports (a presence subscription makes the
--   server report them: ucwa.subscription), `presence` as @{Contact:presence}
--   gives it;
-- * `note`, `location`: likewise for its note and location;
-- * `added`, `updated`, `deleted`.
--
-- Every link is followed through the session's send path: a link to a host
-- the trust rules refuse fails with Forbidden and sends nothing.
-- @module ucwa.people
local dispatch = require "ucwa.dispatch"
local errors = require "ucwa.errors"
local resource = require "ucwa.resource"

local people = {}

--- The longest search query, in characters (search_ref.md).
people.MAX_QUERY = 256
--- The largest search limit (search_ref.md; the smallest is 1).
people.MAX_LIMIT = 100

local Contact = resource.class("contact", nil,
  { presence = true, note = true, location = true, added = true, updated = true, deleted = true })
local Group = resource.class("group")
people.Contact, people.Group = Contact, Group
resource.register("contact", Contact)
for _, rel in ipairs{ "group", "defaultGroup", "pinnedGroup", "distributionGroup" } do
  resource.register(rel, Group)
end

local function no_link(what, rel)
  return errors.new{ code = "NotFound", subcode = "NoLink", message = tostring(what) .. " has no " .. rel .. " link" }
end

--- The members of a model's `embedded[rel]`: a list whichever way the
-- parser gave it (one resource, or an array).
-- @tparam table model
-- @string rel
-- @treturn table
function people.embedded_list(model, rel)
  local e = model.embedded and model.embedded[rel]
  if e == nil then return {} end
  if e.rel or e.href or e.properties then return { e } end
  return e
end

-- Contact objects from a collection model: the embedded contacts, else the
-- `contact` links (objects that know only their href until refreshed).
local function contacts_in(session, model)
  local registry, list = session.registry, {}
  for _, m in ipairs(people.embedded_list(model, "contact")) do
    list[#list + 1] = registry:object(m, "contact")
  end
  if #list == 0 then
    local links = model.links and model.links.contact
    if links and links.href then links = { links } end
    for _, l in ipairs(links or {}) do
      list[#list + 1] = registry:find(l.href) or registry:object({ rel = "contact", href = l.href }, "contact")
    end
  end
  return list
end

-- GETs `href` (with `query`) and hands the model to shape(model) for done.
local function get(session, href, query, shape, done)
  session:send({ method = "GET", url = href, query = query }, function(model, err)
    if not model then return done(nil, err) end
    if model == true then model = {} end
    done(shape(model))
  end)
end

--- The href of link `rel` of the resource the application embeds as `emb`
-- (`"self"`: its own), or nil and a NoLink error whose message ends with `hint`.
-- @tparam table session
-- @string emb
-- @string rel
-- @string hint
function people.app_link(session, emb, rel, hint)
  local href = resource.embedded_link(session.application, emb, rel)
  if href then return href end
  return nil, errors.new{ code = "NotAllowed", subcode = "NoLink",
    message = emb .. " has no " .. rel .. " link (" .. hint .. ")" }
end

--- The href of the embedded people resource's link `rel`, or nil and a NoLink error.
-- @tparam table session
-- @string rel
function people.people_link(session, rel)
  return people.app_link(session, "people", rel, "not signed in yet?")
end
local people_link = people.people_link

-- ------------------------------------------------------------------------
-- Search, the contact list, groups

--- Searches the directory: cb(contacts, err), a list of contact objects
-- with `list.moreResultsAvailable`. `opts.limit`: 1 to @{MAX_LIMIT}. A
-- query that is empty or longer than @{MAX_QUERY} characters, or a limit out
-- of range, fails with ParameterValidationFailure and sends nothing; a
-- query that is not a string, or a limit that is not an integer, raises.
-- @tparam table session
-- @string query
-- @tparam[opt] table opts `{limit =}`
-- @tparam[opt] function cb
function people.search(session, query, opts, cb)
  if type(query) ~= "string" then error("bad argument #1 to 'search' (string expected)", 3) end
  if opts ~= nil and type(opts) ~= "table" then error("bad argument #2 to 'search' (table expected)", 3) end
  local limit = opts and opts.limit
  if limit ~= nil and math.type(limit) ~= "integer" then
    error("bad argument #2 to 'search' (limit must be an integer)", 3)
  end
  local refused
  if query == "" or (utf8.len(query) or #query) > people.MAX_QUERY then
    refused = errors.validation("query must be 1 to " .. people.MAX_QUERY .. " characters")
  elseif limit and (limit < 1 or limit > people.MAX_LIMIT) then
    refused = errors.validation("limit must be 1 to " .. people.MAX_LIMIT)
  end
  return session.async:call(cb, function(done)
    if refused then return done(nil, refused) end
    local href, err = people_link(session, "search")
    if not href then return done(nil, err) end
    get(session, href, { query = query, limit = limit and tostring(limit) or nil }, function(model)
      local list = contacts_in(session, model)
      list.moreResultsAvailable = model.properties and model.properties.moreResultsAvailable == true
      return list
    end, done)
  end)
end

--- The contact list: cb(contacts, err).
-- @tparam table session
-- @tparam[opt] function cb
function people.contacts(session, cb)
  return session.async:call(cb, function(done)
    local href, err = people_link(session, "myContacts")
    if not href then return done(nil, err) end
    get(session, href, nil, function(model) return contacts_in(session, model) end, done)
  end)
end

local GROUP_RELS = { "pinnedGroup", "defaultGroup", "group", "distributionGroup" }

--- The groups of the contact list: cb(groups, err), group objects
-- (`g.name`, `g.id`, `g.rel`: group, defaultGroup, pinnedGroup, distributionGroup).
-- @tparam table session
-- @tparam[opt] function cb
function people.groups(session, cb)
  return session.async:call(cb, function(done)
    local href, err = people_link(session, "myGroups")
    if not href then return done(nil, err) end
    get(session, href, nil, function(model)
      local list = {}
      for _, rel in ipairs(GROUP_RELS) do
        for _, m in ipairs(people.embedded_list(model, rel)) do
          list[#list + 1] = session.registry:object(m, rel)
        end
      end
      return list
    end, done)
  end)
end

--- The group's members: cb(contacts, err) (groupContacts_ref.md).
-- @tparam[opt] function cb
function Group:members(cb)
  local session = self._session
  return session.async:call(cb, function(done)
    local href = self:link("groupContacts")
    if not href then return done(nil, no_link(self.rel, "groupContacts")) end
    get(session, href, nil, function(model) return contacts_in(session, model) end, done)
  end)
end

-- ------------------------------------------------------------------------
-- A contact's parts

-- GETs the contact's link `rel`: done(shape(model)).
local function part(contact, rel, shape, cb)
  local session = contact._session
  return session.async:call(cb, function(done)
    local href = contact:link(rel)
    if not href then return done(nil, no_link("contact " .. tostring(contact.uri or contact.href), rel)) end
    get(session, href, nil, shape, done)
  end)
end

local function properties(model) return model.properties or {} end

--- The contact's presence: cb(`{availability =, activity =, deviceType =, lastActive =}`, err)
-- (contactPresence_ref.md).
-- @tparam[opt] function cb
function Contact:presence(cb)
  return part(self, "contactPresence", properties, cb)
end

--- The contact's note: cb(`{message =, type =}`, err).
-- @tparam[opt] function cb
function Contact:note(cb)
  return part(self, "contactNote", properties, cb)
end

--- The contact's location: cb(`{location =}`, err).
-- @tparam[opt] function cb
function Contact:location(cb)
  return part(self, "contactLocation", properties, cb)
end

--- The modalities the contact can use now: cb(list, err), e.g. `{"Messaging"}`.
-- @tparam[opt] function cb
function Contact:supported_modalities(cb)
  return part(self, "contactSupportedModalities", function(model)
    local m = model.properties and model.properties.modalities
    return type(m) == "table" and m or {}
  end, cb)
end

--- The contact's photo: cb(`{bytes =, content_type =}`, err) (contactPhoto_ref.md).
-- @tparam[opt] function cb
function Contact:photo(cb)
  local session = self._session
  return session.async:call(cb, function(done)
    local href = self:link("contactPhoto")
    if not href then return done(nil, no_link("contact " .. tostring(self.uri or self.href), "contactPhoto")) end
    session:send({ method = "GET", url = href, raw = true, accept = "image/jpeg, image/*" }, function(ok, err, resp)
      if not ok then return done(nil, err) end
      done{ bytes = resp.body or "", content_type = resp.headers["content-type"] }
    end)
  end)
end

--- The contact's name, else its URI.
-- @treturn string
function Contact:display()
  return self.name or self.uri or tostring(self.href)
end

-- What tells one state of a part from another: a change is a new signature.
local SIGNATURE = {
  presence = function(p) return tostring(p.availability) .. "\0" .. tostring(p.activity) end,
  note = function(p) return tostring(p.message) .. "\0" .. tostring(p.type) end,
  location = function(p) return tostring(p.location) end,
}
local READ = { presence = Contact.presence, note = Contact.note, location = Contact.location }

-- The event channel said part `kind` changed: read it (one GET at a time;
-- a change reported meanwhile reads it again after) and fire `kind` when it
-- differs from what was last fired.
function Contact:_changed(kind)
  local busy = rawget(self, "_reading")
  if not busy then busy = {}; self._reading = busy end
  if busy[kind] then busy[kind] = "again"; return end
  busy[kind] = true
  READ[kind](self, function(p, err)
    local again = busy[kind] == "again"
    busy[kind] = nil
    if not p then
      -- the event said it changed and the bot cannot see how: a fault to tell
      err.message = "reading the " .. kind .. " of " .. self:display() .. " after its change: " .. tostring(err.message)
      self._session:report(err)
    else
      local last = rawget(self, "_last")
      if not last then last = {}; self._last = last end
      local sig = SIGNATURE[kind](p)
      if last[kind] ~= sig then
        last[kind] = sig
        self:_emit(kind, p)
      end
    end
    if again then self:_changed(kind) end
  end)
end

-- Contact part events (`updated contactPresence` ..., their `in` link the
-- contact) reach the contact object, when the bot holds one.
local PART_EVENTS = { contactPresence = "presence", contactNote = "note", contactLocation = "location" }
for rel, kind in pairs(PART_EVENTS) do
  dispatch.BY_REL[rel] = function(registry, ev)
    local contact = ev["in"] and registry:find(ev["in"].href)
    if contact and contact._changed and ev.type ~= "deleted" then contact:_changed(kind) end
  end
end

return people
