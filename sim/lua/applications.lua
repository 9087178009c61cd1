-- ucwa-sim: applications (CreateAnApplication.md, application_ref.md, me_ref.md,
-- makeMeAvailable_ref.md, reportMyActivity_ref.md): creating one from a
-- token, the application resource with its embedded me / people /
-- communication, availability, idle expiry, and the routes under <app>.
--
-- Fields other modules read: app.id, .href, .host (the host it lives on:
-- requests for it elsewhere get 404), .user (the token's identity),
-- .scopes, .anonymous, .meeting_id (an anonymous token's meeting),
-- .available (after makeMeAvailable).
--
-- An expired application leaves a tombstone: later requests for it get
-- 404 InactiveApplicationExpired (a deleted or forgotten one is just
-- unknown: 404 ApplicationNotFound).
local host = require "ucwasim.host"
local auth = require "auth"
local config = require "config"
local console = require "console"
local conversations = require "conversations"
local directory = require "directory"
local events = require "events"
local fmt = require "formats"
local invitations = require "invitations"
local messaging = require "messaging"
local people = require "people"
local presence = require "presence"
local online_meetings = require "online_meetings"
local plants = require "plants"
local batching = require "batching"
local reply = require "reply"
local timers = require "timers"

local M = {}

M.PATH = "/ucwa/oauth/v1/applications"
M.ANON_PATH = "/ucwa/anonymous/v1/applications"

local apps = {}      -- id -> app
local order = {}     -- ids in creation order (for the state dump)
-- username -> { apps = { app = true }, n = #apps, available = { app = true },
-- by_endpoint = { host -> { endpointId -> app } } }: what sign-in and
-- invitations look up, without a walk over the user's applications (10,000
-- bots of one user signing in walked 10,000 each: issue 16)
local user_apps = {}
local seq = 100
local expired = {}     -- id -> { host=, message= } (tombstones, at most MAX_TOMBSTONES)
local expired_order, expired_head, expired_tail = {}, 1, 0 -- a FIFO of ids
local MAX_TOMBSTONES = 10000
local EXPIRED = "InactiveApplicationExpired"

local function uuid() return fmt.uuid(host.random(16)) end

---------------------------------------------------------------------------
-- resources

local function me_resource(app)
  local h = app.href
  local u = app.user
  local res = fmt.resource("me", h .. "/me")
    :prop("name", u.name)
    :prop("uri", u.uri)
  if app.anonymous then return res end
  res:prop("emailAddresses", { u.username })
    :prop("endpointUri", u.uri .. ";opaque=user:epid:" .. app.epid .. ";gruu")
    :prop("company", u.company)
    :prop("department", u.department)
    :prop("title", u.title)
    :prop("officeLocation", u.office)
    :prop("workPhoneNumber", u.phone)
  if not app.available then
    res:link("makeMeAvailable", h .. "/me/makeMeAvailable")
  end
  res:link("callForwardingSettings", h .. "/me/callForwardingSettings")
    :link("phones", h .. "/me/phones")
    :link("photo", h .. "/photos/" .. u.username)
  if app.available then
    res:link("location", h .. "/me/location")
      :link("note", h .. "/me/note")
      :link("presence", h .. "/me/presence")
      :link("reportMyActivity", h .. "/me/reportMyActivity")
  end
  return res
end

local function people_resource(app)
  local h = app.href .. "/people"
  return fmt.resource("people", h)
    :link("presenceSubscriptions", h .. "/presenceSubscriptions")
    :link("subscribedContacts", h .. "/subscribedContacts")
    :link("myGroups", h .. "/groups")
    :link("myContacts", h .. "/contacts")
    :link("search", h .. "/search")
end

local function communication_resource(app)
  local h = app.href .. "/communication"
  local res = fmt.resource("communication", h)
    :prop(app.put_guid, "please pass this in a PUT request")
    :prop("supportedModalities", app.available and { "Messaging" } or {})
    :prop("supportedMessageFormats", { "Plain", "Html" })
    :prop("etag", tostring(app.etag))
    :link("conversations", h .. "/conversations?filter=active")
  if directory.has_scope(app.scopes, "Conversations.Initiate") then
    res:link("startOnlineMeeting", h .. "/onlineMeetingInvitations?onlineMeetingUri=adhoc")
      :link("joinOnlineMeeting", h .. "/onlineMeetingInvitations")
    if not app.anonymous then res:link("startMessaging", h .. "/messagingInvitations") end
  end
  return res
end

local function app_resource(app)
  local h = app.href
  local res = fmt.resource("application", h)
    :prop("culture", app.culture)
    :prop("userAgent", app.userAgent)
    :prop("type", "Browser")
    :prop("endpointId", app.endpointId)
    :prop("id", app.id)
    :prop("instanceId", app.instanceId)
    :link("policies", h .. "/policies")
    :link("batch", plants.href("batch", h .. "/batch", app.host))
    :link("events", h .. "/events?ack=" .. events.info(app).next_ack)
    :link("reportMyNetwork", h .. "/reportMyNetwork")
  res:embed("me", me_resource(app))
  res:embed("people", people_resource(app))
  if not app.anonymous then
    res:embed("onlineMeetings", fmt.resource("onlineMeetings", h .. "/onlineMeetings")
      :link("myOnlineMeetings", h .. "/onlineMeetings/myOnlineMeetings")
      :link("onlineMeetingDefaultValues", h .. "/onlineMeetings/defaultValues")
      :link("onlineMeetingEligibleValues", h .. "/onlineMeetings/eligibleValues")
      :link("onlineMeetingPolicies", h .. "/onlineMeetings/policies")
      :link("phoneDialInInformation", h .. "/onlineMeetings/phoneDialInInformation"))
  end
  res:embed("communication", communication_resource(app))
  return res
end

---------------------------------------------------------------------------
-- lifetime

-- Everything the application had going on in meetings goes (deleted, or
-- reset for resume).
local function drop_conversations(app)
  conversations.app_gone(app)
  invitations.app_gone(app)
end
events.on_reset(drop_conversations)

-- Removes an application; its pending P-GET gets 404 with `subcode`
-- (default ApplicationNotFound).
function M.delete(app, why, subcode)
  if app.deleted then return end
  app.deleted = true
  timers.cancel(app.idle_timer)
  drop_conversations(app)
  presence.app_gone(app)
  events.close(app, why, subcode)
  apps[app.id] = nil
  local mine = user_apps[app.user.username]
  if mine.apps[app] then
    mine.apps[app], mine.available[app] = nil, nil
    mine.n = mine.n - 1
    local here = mine.by_endpoint[app.host]
    if here and here[app.endpointId] == app then here[app.endpointId] = nil end
  end
  console.changed("app", app)
end

-- The application expires (idle, or the control API): gone, and later
-- requests for it get 404 InactiveApplicationExpired.
function M.expire(app)
  local why = "An inactive application expired."
  M.delete(app, why, EXPIRED)
  expired[app.id] = { host = app.host, message = why }
  expired_tail = expired_tail + 1
  expired_order[expired_tail] = app.id
  if expired_tail - expired_head >= MAX_TOMBSTONES then
    expired[expired_order[expired_head]] = nil
    expired_order[expired_head] = nil
    expired_head = expired_head + 1
  end
end

-- When the application was last used: a request, or a P-GET (answered,
-- replaced, or whose client went away).
local function last_used(app)
  return math.max(app.last_active, events.last_pget(app))
end

-- An application with no request and no pending P-GET for --app-idle
-- seconds expires.
local function schedule_idle(app)
  timers.cancel(app.idle_timer)
  local idle = config.get("app-idle")
  app.idle_timer = timers.after(math.max(last_used(app) + idle - host.now(), 0.01), function()
    if app.deleted then return end
    local holding = events.holding(app)
    if holding or host.now() - last_used(app) < idle then
      if holding then app.last_active = host.now() end
      schedule_idle(app)
      return
    end
    M.expire(app)
  end)
end

-- The server forgets that the application made itself available (a pool
-- that lost it): reportMyActivity answers 409 MakeMeAvailableRequired and
-- makeMeAvailable works again.
function M.forget_availability(app)
  if not app.available then return false end
  app.available = false
  user_apps[app.user.username].available[app] = nil
  app.etag = app.etag + 1
  return true
end

local function created(ctx, app)
  return reply.resource(ctx, 201, app_resource(app), { Location = app.href, ETag = tostring(app.etag) })
end

-- POST applications / anonApplications {userAgent, endpointId, culture}
local function create(ctx, tok, anonymous_path)
  if tok.anonymous ~= anonymous_path then
    return reply.error(ctx, 403, "Forbidden", nil, anonymous_path
      and "This resource is for anonymous meeting tokens."
      or "Anonymous tokens must use the anonymous applications resource.")
  end
  local input, refusal = reply.input(ctx)
  if not input then return table.unpack(refusal) end
  local ua, culture, epid = reply.field(input, "userAgent"), reply.field(input, "culture"),
    reply.field(input, "endpointId")
  if type(ua) ~= "string" or ua == "" or #ua > 100
      or (culture ~= nil and (type(culture) ~= "string" or #culture > 100)) then
    return reply.bad_parameter(ctx, "userAgent is required (at most 100 characters).", "userAgent")
  end
  if anonymous_path and (type(culture) ~= "string" or culture == "") then
    return reply.bad_parameter(ctx, "culture is required.", "culture")
  end
  if not anonymous_path and (type(epid) ~= "string" or epid == "") then
    return reply.bad_parameter(ctx, "endpointId is required.", "endpointId")
  end
  local user = tok.identity
  local mine = user_apps[user.username]
  if not mine then
    mine = { apps = {}, n = 0, available = {}, by_endpoint = {} }
    user_apps[user.username] = mine
  end
  -- The same endpoint signing in again (on the same host) gets its
  -- application back.
  local here = mine.by_endpoint[ctx.host]
  local again = epid and here and here[epid]
  if again then
    again.last_active = host.now()
    again.token = tok
    return created(ctx, again)
  end
  if mine.n >= (user.max_apps or 10000) then
    return reply.error(ctx, 410, "Gone", "TooManyApplications", "There are too many applications for this user.")
  end
  seq = seq + 1
  local id = tostring(seq)
  local app = {
    id = id,
    href = (anonymous_path and M.ANON_PATH or M.PATH) .. "/" .. id,
    host = ctx.host,
    user = user,
    token = tok,
    anonymous = tok.anonymous,
    meeting_id = tok.meeting,
    scopes = tok.scopes,
    userAgent = ua,
    culture = culture or "en-US",
    endpointId = epid or uuid(),
    instanceId = host.random(8),
    epid = host.random(10),
    put_guid = uuid(),
    etag = math.random(1000000000, 4000000000),
    available = false,
    last_active = host.now(),
    created = host.wallclock(),
  }
  apps[id] = app
  order[#order + 1] = id
  mine.apps[app], mine.n = true, mine.n + 1
  if epid then
    if not here then here = {}; mine.by_endpoint[ctx.host] = here end
    here[epid] = app
  end
  events.open(app)
  schedule_idle(app)
  console.changed("app", app)
  return created(ctx, app)
end

---------------------------------------------------------------------------
-- routes under <app>

-- POST <app>/me/makeMeAvailable
local function make_me_available(ctx, app)
  if app.anonymous then
    return reply.error(ctx, 403, "Forbidden", "AnonymousNotAllowed",
      "This operation is not allowed for anonymous users.")
  end
  if not directory.has_scope(app.scopes, "Conversations.Receive") then
    return reply.missing_scope(ctx, "Conversations.Receive")
  end
  local input, refusal = reply.input(ctx, true)
  if not input then return table.unpack(refusal) end
  if app.available then
    return reply.error(ctx, 409, "Conflict", "AlreadyExists", "The application is already available.")
  end
  app.available = true
  user_apps[app.user.username].available[app] = true
  app.etag = app.etag + 1
  presence.signed_in(app)
  console.changed("app", app)
  local me, comm = app.href .. "/me", app.href .. "/communication"
  events.emit(app, "medium", "me", me,
    { type = "updated", link = { rel = "me", href = me }, resource = me_resource(app) })
  events.emit(app, "medium", "me", me,
    { type = "added", link = { rel = "presence", href = me .. "/presence" } })
  events.emit(app, "medium", "communication", comm,
    { type = "updated", link = { rel = "communication", href = comm }, resource = communication_resource(app) })
  return reply.no_content()
end

-- POST <app>/me/reportMyActivity
local function report_my_activity(ctx, app)
  if not app.available then
    return reply.error(ctx, 409, "Conflict", "MakeMeAvailableRequired", "makeMeAvailable is required first.")
  end
  return reply.no_content()
end

-- <app>/communication<rest>
local function communication_route(ctx, app, rest)
  if rest == "" then
    return reply.get_only(ctx, function() return communication_resource(app) end, { ETag = tostring(app.etag) })
  end
  local inv_rest = rest:match("^/onlineMeetingInvitations(.*)$")
  if inv_rest then
    return invitations.route(ctx, app, inv_rest)
  end
  local im_rest = rest:match("^/messagingInvitations(.*)$")
  if im_rest then
    return messaging.route(ctx, app, im_rest)
  end
  if rest == "/conversations" then
    return conversations.list_route(ctx, app)
  end
  local cid, crest = rest:match("^/conversations/([^/]+)(.*)$")
  local conv = cid and conversations.get(app, cid)
  if conv then
    return conversations.route(ctx, conv, crest)
  end
  return reply.not_found(ctx)
end

local function app_route(ctx, app, rest)
  if rest == "" then
    return reply.by_method(ctx, {
      GET = function() return reply.resource(ctx, 200, app_resource(app), { ETag = tostring(app.etag) }) end,
      DELETE = function()
        M.delete(app, "The application was deleted.")
        return reply.no_content()
      end,
    })
  elseif rest == "/events" then
    return reply.only(ctx, "GET", events.get, ctx, app)
  elseif rest == "/me" then
    return reply.get_only(ctx, function() return me_resource(app) end)
  elseif rest == "/me/makeMeAvailable" then
    return reply.only(ctx, "POST", make_me_available, ctx, app)
  elseif rest == "/me/reportMyActivity" then
    return reply.only(ctx, "POST", report_my_activity, ctx, app)
  elseif people.ME_PARTS[rest:match("^/me/(%a+)$") or ""] then
    return people.me_route(ctx, app, rest:match("^/me/(%a+)$"))
  elseif rest == "/reportMyNetwork" then
    return reply.only(ctx, "POST", reply.no_content)
  elseif rest == "/people" then
    return reply.get_only(ctx, function() return people_resource(app) end)
  elseif rest:sub(1, 8) == "/people/" or rest:sub(1, 8) == "/photos/" then
    return people.route(ctx, app, rest)
  elseif rest:sub(1, 14) == "/communication" then
    return communication_route(ctx, app, rest:sub(15))
  elseif rest:sub(1, 15) == "/onlineMeetings" then
    return online_meetings.route(ctx, app, rest:sub(16))
  elseif rest == "/batch" then
    return reply.only(ctx, "POST", batching.route, ctx, app)
  end
  return reply.not_found(ctx)
end

-- Everything under /ucwa/{oauth,anonymous}/v1/applications (authenticated).
function M.route(ctx)
  local req = ctx.req
  local path = req.path
  local kind, id, rest = path:match("^/ucwa/(%a+)/v1/applications/([^/]+)(.*)$")
  local collection = path == M.PATH or path == M.ANON_PATH
  if not collection and not (id and (kind == "oauth" or kind == "anonymous")) then
    return reply.not_found(ctx)
  end
  local tok, refusal = auth.authenticate(req, ctx.host)
  if not tok then return table.unpack(refusal) end
  if collection then
    return reply.only(ctx, "POST", create, ctx, tok, path == M.ANON_PATH)
  end
  local app = apps[id]
  if not app or app.host ~= ctx.host or app.href ~= "/ucwa/" .. kind .. "/v1/applications/" .. id then
    local tomb = expired[id]
    if tomb and tomb.host == ctx.host then
      return reply.error(ctx, 404, "NotFound", EXPIRED, tomb.message)
    end
    return reply.error(ctx, 404, "NotFound", "ApplicationNotFound", "The application resource does not exist.")
  end
  if app.user.username ~= tok.identity.username then
    return reply.error(ctx, 403, "Forbidden", nil, "The application belongs to another user.")
  end
  app.token = tok
  app.last_active = host.now()
  -- a request other than a P-GET is the user at work (presence: not idle)
  if rest ~= "/events" and not app.anonymous then presence.active(app.user.username) end
  return app_route(ctx, app, rest)
end

---------------------------------------------------------------------------
-- for the control API

function M.get(id)
  return apps[id]
end

-- The live applications, in creation order.
function M.list()
  local list = {}
  for _, id in ipairs(order) do
    if apps[id] then list[#list + 1] = apps[id] end
  end
  -- keep the order list short once applications are gone
  if #order > 2 * (#list + 16) then
    order = {}
    for i, app in ipairs(list) do order[i] = app.id end
  end
  return list
end

-- The applications of `username` that can take an incoming invitation, oldest first.
function M.available_for(username)
  local list = {}
  local mine = user_apps[username]
  for app in pairs(mine and mine.available or {}) do
    if directory.has_scope(app.scopes, "Conversations.Receive") then
      list[#list + 1] = app
    end
  end
  table.sort(list, function(a, b) return tonumber(a.id) < tonumber(b.id) end)
  return list
end

-- The application's state (with its event channel's) for the control API.
function M.info(app)
  local info = events.info(app)
  info.id = app.id
  info.href = app.href
  info.host = app.host.name
  info.user = app.user.username
  info.anonymous = app.anonymous
  info.available = app.available
  info.conversations = conversations.count(app)
  info.idle = host.now() - app.last_active
  return info
end

return M
