--- The bot's own presence, note, location and `me` (presence_ref.md,
-- note_ref.md, location_ref.md, me_ref.md, SetMyPresenceInformation.md).
--
-- The links come from the application's embedded `me`; the server gives
-- presence, note and location only after makeMeAvailable (the client's
-- `available` option). Setting is a POST, as the reference says.
-- The client's methods (`client:presence()` ...) call these.
-- @module ucwa.presence
local errors = require "ucwa.errors"
local people = require "ucwa.people"
local resource = require "ucwa.resource"

local presence = {}

--- The availabilities a user may set (PreferredAvailability_ref.md).
presence.SETTABLE = { "Online", "Busy", "DoNotDisturb", "BeRightBack", "Away", "Offwork" }
local settable = {}
for _, a in ipairs(presence.SETTABLE) do settable[a] = true end

--- The longest location, in characters (location_ref.md).
presence.MAX_LOCATION = 60

local Me = resource.class("me")
resource.register("me", Me)
presence.Me = Me

-- The href of me's link `rel`, or nil and why there is none.
local function me_link(session, rel)
  return people.app_link(session, "me", rel, "not signed in, or not available: makeMeAvailable, the available option")
end

-- GETs me's link `rel`; done(properties or nil, err).
local function read(session, rel, cb)
  return session.async:call(cb, function(done)
    local href, err = me_link(session, rel)
    if not href then return done(nil, err) end
    session:send({ method = "GET", url = href }, function(model, e)
      if not model then return done(nil, e) end
      done(model ~= true and model.properties or {})
    end)
  end)
end

-- POSTs `body` to me's link `rel` (after `refused`, a limit broken, fails
-- without sending); done(true or nil, err).
local function write(session, rel, body, cb, refused)
  return session.async:call(cb, function(done)
    if refused then return done(nil, refused) end
    local href, err = me_link(session, rel)
    if not href then return done(nil, err) end
    session:send({ method = "POST", url = href, body = body }, function(_, e)
      if e then return done(nil, e) end
      done(true)
    end)
  end)
end

--- True when `a` is an availability a user may set.
-- @string a
-- @treturn boolean
function presence.settable(a)
  return settable[a] == true
end

--- The bot's presence: cb(`{availability =, activity =}`, err).
-- @tparam table session
-- @tparam[opt] function cb
function presence.get(session, cb)
  return read(session, "presence", cb)
end

--- Sets the bot's availability (one of @{SETTABLE}; anything else raises,
-- before anything is sent). cb(true, err).
-- @tparam table session
-- @string availability
-- @tparam[opt] function cb
function presence.set(session, availability, cb)
  if not settable[availability] then
    error(("bad argument #1 to 'set_presence' (availability must be one of %s; got %s)")
      :format(table.concat(presence.SETTABLE, ", "), tostring(availability)), 3)
  end
  return write(session, "presence", { availability = availability }, cb)
end

--- The bot's note: cb(`{message =, type =}`, err).
-- @tparam table session
-- @tparam[opt] function cb
function presence.note(session, cb)
  return read(session, "note", cb)
end

--- Publishes the bot's note (`""` resets it). cb(true, err).
-- @tparam table session
-- @string text
-- @tparam[opt] function cb
function presence.set_note(session, text, cb)
  if type(text) ~= "string" then error("bad argument #1 to 'set_note' (string expected)", 3) end
  return write(session, "note", { message = text }, cb)
end

--- The bot's location: cb(`{location =}`, err).
-- @tparam table session
-- @tparam[opt] function cb
function presence.location(session, cb)
  return read(session, "location", cb)
end

--- Sets the bot's location (`""` clears it); more than @{MAX_LOCATION}
-- characters fails with ParameterValidationFailure and sends nothing.
-- cb(true, err).
-- @tparam table session
-- @string text
-- @tparam[opt] function cb
function presence.set_location(session, text, cb)
  if type(text) ~= "string" then error("bad argument #1 to 'set_location' (string expected)", 3) end
  local refused
  if (utf8.len(text) or #text) > presence.MAX_LOCATION then
    refused = errors.validation("location is longer than " .. presence.MAX_LOCATION .. " characters")
  end
  return write(session, "location", { location = text }, cb, refused)
end

--- The `me` resource, read again: cb(me, err), its me_ref.md properties by
-- name (`me.name`, `me.uri`, `me.title`, `me.department`, `me.emailAddresses` ...).
-- @tparam table session
-- @tparam[opt] function cb
function presence.me(session, cb)
  return session.async:call(cb, function(done)
    local href = resource.embedded_link(session.application, "me", "self")
    if not href then return done(nil, select(2, me_link(session, "self"))) end
    session:send({ method = "GET", url = href }, function(model, err)
      if not model then return done(nil, err) end
      if model == true then model = { rel = "me", href = href } end
      session.application.embedded.me = model
      done(session.registry:object(model, "me"))
    end)
  end)
end

return presence
