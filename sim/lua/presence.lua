-- ucwa-sim: presence (presence_ref.md, note_ref.md, location_ref.md,
-- contactPresence_ref.md) and presence subscriptions
-- (presenceSubscriptions_ref.md, presenceSubscription_ref.md,
-- presenceSubscriptionMemberships_ref.md).
--
-- Each directory user has a presence: Offline until one of its
-- applications makes itself available (or the control API drives it, as
-- from another endpoint), then what the user set (Online by default), and
-- IdleOnline / IdleBusy once no request came for `idle` seconds.  Every
-- change sends `updated contactPresence` (note: contactNote, location:
-- contactLocation) to the applications subscribed to that user, and
-- `updated presence` to the user's own applications.
--
-- Subscriptions last `duration` minutes (10..30; the `minute` setting says
-- how long a minute is, for tests), get an `updated presenceSubscription`
-- event a minute before they lapse and a `deleted` one when they do.
-- Extending adds the duration to what remains, at most 30 minutes.
local host = require "ucwasim.host"
local console = require "console"
local directory = require "directory"
local events = require "events"
local timers = require "timers"

local M = {}

-- PreferredAvailability_ref.md: what a user may set.
M.SETTABLE = { Online = true, Busy = true, DoNotDisturb = true, BeRightBack = true, Away = true, Offwork = true }
local ACTIVITY = { Online = "Available", Busy = "Busy", DoNotDisturb = "Presenting", BeRightBack = "BeRightBack",
  Away = "Away", Offwork = "Off Work", IdleOnline = "Inactive", IdleBusy = "Busy", Offline = "Offline" }

M.MIN_DURATION, M.MAX_DURATION = 10, 30
M.MAX_MEMBERS = 1000        -- members of one subscription
M.MAX_SUBSCRIPTIONS = 64    -- subscriptions of one application (LimitExceeded past it)
M.MAX_LOCATION = 60         -- location_ref.md
M.MAX_NOTE = 2048

local settings = { minute = 60, idle = 300 }

local people = {}        -- username -> { chosen=, note=, location=, apps = {app=true}, virtual=, ... }
local subscriptions = {} -- id -> subscription
local sub_order = {}     -- ids, in creation order
local sub_seq = 0
local ended = { expired = 0, deleted = 0 } -- subscriptions that ended, by why

-- The settings `minute` (seconds a subscription minute lasts) and `idle`
-- (seconds without a request before a user is idle); `t` changes them.
function M.settings(t)
  for k in pairs(settings) do
    if t and t[k] ~= nil then
      local n = tonumber(t[k])
      if not n or n <= 0 or n ~= n or n == math.huge then return nil, k .. " must be a positive number of seconds" end
      settings[k] = n
    end
  end
  return { minute = settings.minute, idle = settings.idle }
end

local function person(username)
  local p = people[username]
  if not p then
    p = { chosen = "Online", apps = {}, last_active = host.now(), idle = false, note = "", location = "" }
    people[username] = p
  end
  return p
end

local function signed_in(p)
  return p.virtual or next(p.apps) ~= nil
end

-- The availability of a user now (Availability_ref.md).
function M.availability(username)
  local p = person(directory.normalize(username))
  if not signed_in(p) then return "Offline" end
  if p.idle then
    if p.chosen == "Online" then return "IdleOnline" end
    if p.chosen == "Busy" then return "IdleBusy" end
  end
  return p.chosen
end

-- { availability=, activity=, note=, location=, last_active= (wall clock ms) } of a user.
function M.state(username)
  username = directory.normalize(username)
  local p = person(username)
  local a = M.availability(username)
  return { availability = a, activity = ACTIVITY[a], note = p.note, location = p.location,
    last_active = p.last_active_wall or host.wallclock(), signed_in = signed_in(p) }
end

---------------------------------------------------------------------------
-- events

local function contact_href(app, username)
  return app.href .. "/people/" .. username
end

-- The sub-resources of a contact, by what changed.
M.CONTACT_PARTS = { presence = "contactPresence", note = "contactNote", location = "contactLocation" }
local PART_PATH = { presence = "/presence", note = "/note", location = "/location" }
local ME_PART = { presence = "presence", note = "note", location = "location" }

local function live(sub)
  return not sub.deleted and not sub.app.deleted
end

-- Tells subscribers and the user's own applications that `part` of
-- `username` changed.
local function tell(username, part)
  console.changed("person", username)
  for _, id in ipairs(sub_order) do
    local sub = subscriptions[id]
    if sub and live(sub) and sub.members[username] then
      local app = sub.app
      local c = contact_href(app, username)
      events.emit(app, "medium", "people", app.href .. "/people", { type = "updated",
        link = { rel = M.CONTACT_PARTS[part], href = c .. PART_PATH[part] },
        ["in"] = { rel = "contact", href = c } })
    end
  end
  for app in pairs(person(username).apps) do
    local me = app.href .. "/me"
    events.emit(app, "medium", "me", me, { type = "updated", link = { rel = ME_PART[part], href = me .. "/" .. part } })
  end
end

-- Publishes the user's presence if it differs from what was last told.
local function publish(username)
  local p = person(username)
  local a = M.availability(username)
  if p.published == a then return end
  p.published = a
  tell(username, "presence")
end

local function schedule_idle(username)
  local p = person(username)
  timers.cancel(p.idle_timer)
  if not signed_in(p) then return end
  p.idle_timer = timers.after(math.max(p.last_active + settings.idle - host.now(), 0.01), function()
    if host.now() - p.last_active >= settings.idle - 1e-3 then
      p.idle = true
      publish(username)
    else
      schedule_idle(username)
    end
  end)
end

-- A request of one of the user's applications: the user is active.
function M.active(username)
  local p = person(username)
  p.last_active = host.now()
  p.last_active_wall = host.wallclock()
  if p.idle then
    p.idle = false
    publish(username)
  end
  if not p.idle_timer or p.idle_timer.dead or p.idle_timer.at > p.last_active + settings.idle + 1 then
    schedule_idle(username)
  end
end

-- An application of the user made itself available (makeMeAvailable).
function M.signed_in(app)
  local username = app.user.username
  local p = person(username)
  p.apps[app] = true
  p.published = p.published or "Offline"
  M.active(username)
  schedule_idle(username)
  publish(username)
end

local drop_subscription

-- An application went (deleted, expired, forgotten): its subscriptions end,
-- and its user may be offline now.
function M.app_gone(app)
  for _, id in ipairs(sub_order) do
    local sub = subscriptions[id]
    if sub and sub.app == app then drop_subscription(sub) end
  end
  if app.anonymous then return end
  local username = app.user.username
  local p = people[username]
  if p and p.apps[app] then
    p.apps[app] = nil
    publish(username)
  end
end

-- The user sets availability `a` (one of M.SETTABLE), from an application
-- or, with `virtual`, from an endpoint outside the simulator (the control
-- API): a virtual endpoint counts as signed in; "Offline" signs it out.
function M.set(username, a, virtual)
  username = directory.normalize(username)
  local p = person(username)
  if virtual then
    p.virtual = a ~= "Offline"
    if a == "Offline" then a = p.chosen end
  end
  p.chosen = a
  p.idle = false
  p.last_active = host.now()
  schedule_idle(username)
  publish(username)
end

-- The user's note (`message`) or location changes.
function M.set_text(username, part, text)
  username = directory.normalize(username)
  local p = person(username)
  if p[part] == text then return end
  p[part] = text
  tell(username, part)
end

-- What the control API may drive of a user: /_sim/users/<user>/<part>.
M.CONTROL = { presence = true, note = true, location = true }

-- The control API: with `t` (a POST), `presence` {availability}, `note`
-- {message} or `location` {location} as the user would set them from an
-- endpoint of its own; returns the user's state, or nil and a message.
function M.control(username, part, t)
  if t and part == "presence" then
    local a = t.availability
    if not (M.SETTABLE[a] or a == "Offline") then
      return nil, "availability must be Online, Busy, DoNotDisturb, BeRightBack, Away, Offwork or Offline"
    end
    M.set(username, a, true)
  elseif t then
    local field = part == "note" and "message" or "location"
    local v = t[field]
    local max = part == "note" and M.MAX_NOTE or M.MAX_LOCATION
    if type(v) ~= "string" or (utf8.len(v) or #v) > max then
      return nil, field .. " must be a string of at most " .. max .. " characters"
    end
    M.set_text(username, part, v)
  end
  return M.state(username)
end

---------------------------------------------------------------------------
-- subscriptions

local function remaining(sub)
  return math.max(sub.expires_at - host.now(), 0)
end

local function sub_href(sub)
  return sub.app.href .. "/people/presenceSubscriptions/" .. sub.id
end
M.href = sub_href

local function sub_event(sub, kind)
  local app = sub.app
  events.emit(app, "medium", "people", app.href .. "/people",
    { type = kind, link = { rel = "presenceSubscription", href = sub_href(sub) } })
end

drop_subscription = function(sub, why)
  if sub.deleted then return end
  sub.deleted = why or "deleted"
  ended[sub.deleted] = ended[sub.deleted] + 1
  timers.cancel(sub.warn_timer)
  timers.cancel(sub.expire_timer)
  subscriptions[sub.id] = nil
  for i, id in ipairs(sub_order) do
    if id == sub.id then table.remove(sub_order, i) break end
  end
end

local function arm(sub)
  timers.cancel(sub.warn_timer)
  timers.cancel(sub.expire_timer)
  local left = remaining(sub)
  if left > settings.minute then
    sub.warn_timer = timers.after(left - settings.minute, function()
      if live(sub) then sub_event(sub, "updated") end
    end)
  end
  sub.expire_timer = timers.after(left, function()
    if not live(sub) then return end
    sub.expired_at = host.now()
    sub_event(sub, "deleted")
    drop_subscription(sub, "expired")
  end)
end

-- A duration in minutes from a request, or nil and a message.
function M.duration(v)
  local n = tonumber(v)
  if not n or n ~= math.floor(n) or n < M.MIN_DURATION or n > M.MAX_DURATION then
    return nil, "duration must be a whole number of minutes, " .. M.MIN_DURATION .. " to " .. M.MAX_DURATION .. "."
  end
  return n
end

local function count_of(app)
  local n = 0
  for _, id in ipairs(sub_order) do
    if subscriptions[id].app == app then n = n + 1 end
  end
  return n
end

-- A new subscription of `app` to `usernames` for `minutes`; nil and a
-- message when the application has too many.
function M.subscribe(app, usernames, minutes)
  if count_of(app) >= M.MAX_SUBSCRIPTIONS then return nil, "too many subscriptions" end
  sub_seq = sub_seq + 1
  local sub = { id = tostring(sub_seq), app = app, members = {}, order = {}, minutes = minutes,
    expires_at = host.now() + minutes * settings.minute, extensions = {}, created = host.now() }
  subscriptions[sub.id] = sub
  sub_order[#sub_order + 1] = sub.id
  M.add(sub, usernames)
  arm(sub)
  return sub
end

-- Adds members (user names in the directory; others are left out).
function M.add(sub, usernames)
  for _, name in ipairs(usernames) do
    local u = directory.user(name)
    if u and not sub.members[u.username] and #sub.order < M.MAX_MEMBERS then
      sub.members[u.username] = true
      sub.order[#sub.order + 1] = u.username
    end
  end
end

-- Removes a member; true when it was one.
function M.remove(sub, username)
  username = directory.normalize(username)
  if not sub.members[username] then return false end
  sub.members[username] = nil
  for i, n in ipairs(sub.order) do
    if n == username then table.remove(sub.order, i) break end
  end
  return true
end

-- Extends by `minutes`: added to what remains, 30 minutes at most.
function M.extend(sub, minutes)
  local left = remaining(sub)
  sub.extensions[#sub.extensions + 1] = { remaining = left / settings.minute, minutes = minutes }
  sub.expires_at = host.now() + math.min(left + minutes * settings.minute, M.MAX_DURATION * settings.minute)
  arm(sub)
end

function M.delete(sub)
  drop_subscription(sub, "deleted")
end

-- The live subscription `id` of `app`, or nil.
function M.get(app, id)
  local sub = subscriptions[id]
  if sub and sub.app == app and live(sub) then return sub end
end

-- The members of the live subscriptions of `app`, by user name.
function M.subscribed(app)
  local set, list = {}, {}
  for _, id in ipairs(sub_order) do
    local sub = subscriptions[id]
    if sub.app == app and live(sub) then
      for _, n in ipairs(sub.order) do
        if not set[n] then set[n] = true; list[#list + 1] = n end
      end
    end
  end
  return list
end

-- The subscriptions for the control API (remaining time in minutes).
function M.describe()
  local list = {}
  for _, id in ipairs(sub_order) do
    local sub = subscriptions[id]
    local ext = {}
    for i, e in ipairs(sub.extensions) do ext[i] = { remaining = e.remaining, minutes = e.minutes } end
    list[#list + 1] = { id = sub.id, app = sub.app.id, user = sub.app.user.username, members = sub.order,
      minutes = sub.minutes, remaining = remaining(sub) / settings.minute, extensions = ext }
  end
  return list, { expired = ended.expired, deleted = ended.deleted }
end

return M
