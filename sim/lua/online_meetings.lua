-- ucwa-sim: scheduled meetings (ScheduleAnOnlineMeeting.md,
-- UpdateAnOnlineMeeting.md, onlineMeetings_ref.md, myOnlineMeetings_ref.md,
-- myOnlineMeeting_ref.md, onlineMeetingDefaultValues_ref.md,
-- onlineMeetingEligibleValues_ref.md, onlineMeetingPolicies_ref.md,
-- phoneDialInInformation_ref.md).
--
-- A user's myOnlineMeetings live as long as the simulator, whichever
-- application made them: each application sees them under its own href.
-- Each meeting has an etag that changes on every update, and a random
-- "<guid>": "please pass this in a PUT request" property; a PUT needs
-- If-Match with the current etag (else 412 PreconditionFailed, or 428
-- without one) and must echo the property. A scheduled meeting is also a
-- meeting of meetings.lua, so every directory user joins it by its
-- onlineMeetingUri, with the lobby rules of its accessLevel.
local host = require "ucwasim.host"
local directory = require "directory"
local fmt = require "formats"
local meetings = require "meetings"
local plants = require "plants"
local reply = require "reply"

local M = {}

local PUT_ECHO = "please pass this in a PUT request"
local MAX_MEETINGS = 1000 -- per organizer
local MAX_PEOPLE = 250    -- attendees or leaders of one meeting

local by_user = {} -- username -> { list = {meeting...}, by_id = {} }

-- What the reference pages list; the defaults are the sample's.
M.ELIGIBLE = {
  accessLevels = { "Everyone", "Invited", "Locked", "SameEnterprise" },
  automaticLeaderAssignments = { "Disabled", "Everyone", "SameEnterprise" },
  eligibleOnlineMeetingRels = { "myOnlineMeetings" },
  entryExitAnnouncements = { "Disabled", "Enabled" },
  lobbyBypassForPhoneUsersSettings = { "Disabled", "Enabled" },
}
M.DEFAULTS = {
  accessLevel = "SameEnterprise",
  automaticLeaderAssignment = "Disabled",
  defaultOnlineMeetingRel = "myOnlineMeetings",
  entryExitAnnouncement = "Disabled",
  lobbyBypassForPhoneUsers = "Disabled",
  participantsWarningThreshold = 250,
}

-- property -> the eligible-values list it must be in
local CHOICES = {
  accessLevel = "accessLevels",
  automaticLeaderAssignment = "automaticLeaderAssignments",
  entryExitAnnouncement = "entryExitAnnouncements",
  lobbyBypassForPhoneUsers = "lobbyBypassForPhoneUsersSettings",
  phoneUserAdmission = "lobbyBypassForPhoneUsersSettings", -- Disabled | Enabled as well
}
local TEXT = { subject = 250, description = 4096 }

local function mine(username)
  local m = by_user[username]
  if not m then
    m = { list = {}, by_id = {} }
    by_user[username] = m
  end
  return m
end

local function new_etag()
  return tostring(math.random(100000000, 4000000000))
end

local function base(app) return app.href .. "/onlineMeetings" end

---------------------------------------------------------------------------
-- lobby rules

-- Does `member` wait in the lobby of scheduled meeting `om`? Leaders never
-- do; otherwise by accessLevel (myOnlineMeeting_ref.md).
local function lobby_rule(om, member)
  local key = member.key
  if om.meeting.leaders[key] then return false end
  local level = om.accessLevel
  if level == "Everyone" then return false end
  if level == "SameEnterprise" then return member.anonymous end
  if level == "Invited" then
    for _, a in ipairs(om.attendees) do
      if directory.normalize(a) == key then return false end
    end
    return true
  end
  return true -- Locked
end

-- The facts meetings.lua keeps, from the scheduled meeting's properties.
local function sync_meeting(om)
  local m = om.meeting
  m.subject = om.subject or ""
  m.leaders = { [om.organizer] = true }
  for _, l in ipairs(om.leaders) do
    local u = directory.normalize(l)
    if u then m.leaders[u] = true end
  end
  m.lobby_rule = function(member) return lobby_rule(om, member) end
end

---------------------------------------------------------------------------
-- resources

local function meeting_resource(app, om)
  local href = base(app) .. "/myOnlineMeetings/" .. om.id
  local u = directory.user(om.organizer)
  return fmt.resource("myOnlineMeeting", plants.href("myOnlineMeeting", href, app.host))
    :prop("accessLevel", om.accessLevel)
    :prop("attendees", fmt.array(om.attendees))
    :prop("automaticLeaderAssignment", om.automaticLeaderAssignment)
    :prop("conferenceId", om.conferenceId)
    :prop("description", om.description)
    :prop("entryExitAnnouncement", om.entryExitAnnouncement)
    :prop("expirationTime", fmt.date(om.expirationTime))
    :prop("joinUrl", "https://meet.contoso.com/" .. om.organizer:match("^[^@]*") .. "/" .. om.id)
    :prop("leaders", fmt.array(om.leaders))
    :prop("lobbyBypassForPhoneUsers", om.lobbyBypassForPhoneUsers)
    :prop("onlineMeetingId", om.id)
    :prop("onlineMeetingRel", "myOnlineMeetings")
    :prop("onlineMeetingUri", om.meeting.uri)
    :prop("organizerUri", u and u.uri or ("sip:" .. om.organizer))
    :prop("phoneUserAdmission", om.phoneUserAdmission)
    :prop("subject", om.subject)
    :prop(om.put_guid, PUT_ECHO)
    :prop("etag", om.etag)
    :link("onlineMeetingExtensions", href .. "/extensions")
end

local function meetings_resource(app)
  local list = {}
  for _, om in ipairs(mine(app.user.username).list) do list[#list + 1] = meeting_resource(app, om) end
  return fmt.resource("myOnlineMeetings", base(app) .. "/myOnlineMeetings"):embed_list("myOnlineMeeting", list)
end

local function online_meetings_resource(app)
  local h = base(app)
  return fmt.resource("onlineMeetings", h)
    :link("myOnlineMeetings", h .. "/myOnlineMeetings")
    :link("onlineMeetingDefaultValues", h .. "/defaultValues")
    :link("onlineMeetingEligibleValues", h .. "/eligibleValues")
    :link("onlineMeetingPolicies", h .. "/policies")
    :link("phoneDialInInformation", h .. "/phoneDialInInformation")
end

local function eligible_resource(app)
  local res = fmt.resource("onlineMeetingEligibleValues", base(app) .. "/eligibleValues")
  for _, name in ipairs{ "accessLevels", "automaticLeaderAssignments", "eligibleOnlineMeetingRels",
                         "entryExitAnnouncements", "lobbyBypassForPhoneUsersSettings" } do
    res:prop(name, fmt.array(M.ELIGIBLE[name]))
  end
  return res:link("myOnlineMeetings", base(app) .. "/myOnlineMeetings")
end

local function defaults_resource(app)
  local res = fmt.resource("onlineMeetingDefaultValues", base(app) .. "/defaultValues")
  for _, name in ipairs{ "accessLevel", "automaticLeaderAssignment", "defaultOnlineMeetingRel",
                         "entryExitAnnouncement", "lobbyBypassForPhoneUsers", "participantsWarningThreshold" } do
    res:prop(name, M.DEFAULTS[name])
  end
  return res
end

local function policies_resource(app)
  return fmt.resource("onlineMeetingPolicies", base(app) .. "/policies")
    :prop("entryExitAnnouncement", "Supported")
    :prop("externalUserMeetingAccess", "Allowed")
    :prop("meetingRecording", "Disallowed")
    :prop("phoneUserAdmission", "Enabled")
    :prop("voipAudio", "Enabled")
    :prop("meetingSize", 250)
end

local function dial_in_resource(app)
  return fmt.resource("phoneDialInInformation", base(app) .. "/phoneDialInInformation")
    :prop("conferenceId", "8251717")
    :prop("defaultRegion", "Redmond")
    :prop("externalDirectoryUri", "https://dialin.contoso.com/")
    :prop("internalDirectoryUri", "https://dialin.contoso.com/")
    :prop("isAudioConferenceProviderEnabled", false)
    :prop("tollNumber", "+14255550100")
    :prop("tollFreeNumbers", fmt.array{ "+18005550100" })
end

---------------------------------------------------------------------------
-- input

-- A list of SIP URIs from the input (JSON array, XML propertyList), or nil
-- and what is wrong.
local function uri_list(v, name)
  if v == nil then return {} end
  if type(v) ~= "table" then return nil, name .. " must be a list of SIP URIs" end
  if #v > MAX_PEOPLE then return nil, name .. ": at most " .. MAX_PEOPLE end
  local out = {}
  for i, x in ipairs(v) do
    if type(x) ~= "string" or not x:lower():match("^sip:[^%s@]+@[^%s]+$") then
      return nil, name .. "[" .. i .. "] is not a SIP URI"
    end
    out[i] = x
  end
  return out
end

-- Checks `input` and writes it into meeting `om` (a new one: every field,
-- with the defaults). Returns true, or nil and (message, name).
local function apply(om, input, new)
  local fields = {}
  for prop, list in pairs(CHOICES) do
    local v = reply.field(input, prop)
    if v ~= nil then
      local ok = false
      for _, x in ipairs(M.ELIGIBLE[list]) do if x == v then ok = true end end
      if not ok then return nil, prop .. " must be one of " .. table.concat(M.ELIGIBLE[list], ", "), prop end
      fields[prop] = v
    elseif new then
      fields[prop] = M.DEFAULTS[prop] or "Disabled"
    end
  end
  for prop, max in pairs(TEXT) do
    local v = reply.field(input, prop)
    if v ~= nil then
      if type(v) ~= "string" or #v > max then return nil, prop .. ": at most " .. max .. " characters", prop end
      fields[prop] = v
    elseif new then
      fields[prop] = ""
    end
  end
  for _, prop in ipairs{ "attendees", "leaders" } do
    local v = reply.field(input, prop)
    if v ~= nil or new then
      local list, why = uri_list(v, prop)
      if not list then return nil, why, prop end
      fields[prop] = list
    end
  end
  local exp = reply.field(input, "expirationTime")
  if exp ~= nil then
    local ms = type(exp) == "string" and tonumber(exp:match("^/Date%((%d+)%)/$"))
    if not ms and type(exp) == "string" then
      local y, mo, d, hh, mi, ss = exp:match("^(%d%d%d%d)-(%d%d)-(%d%d)T(%d%d):(%d%d):(%d%d)")
      if y then
        ms = os.time{ year = tonumber(y), month = tonumber(mo), day = tonumber(d), hour = tonumber(hh),
                      min = tonumber(mi), sec = tonumber(ss), isdst = false } * 1000
      end
    end
    if not ms then return nil, "expirationTime must be a date", "expirationTime" end
    fields.expirationTime = ms
  elseif new then
    fields.expirationTime = os.time() * 1000 + 14 * 24 * 3600 * 1000 -- two weeks
  end
  for k, v in pairs(fields) do om[k] = v end
  return true
end

---------------------------------------------------------------------------
-- routes

local function with_etag(ctx, status, app, om)
  return reply.resource(ctx, status, meeting_resource(app, om), { ETag = '"' .. om.etag .. '"' })
end

local function schedule(ctx, app)
  local input, refusal = reply.input(ctx)
  if not input then return table.unpack(refusal) end
  local store = mine(app.user.username)
  if #store.list >= MAX_MEETINGS then
    return reply.error(ctx, 409, "Conflict", "TooManyMeetings", "The organizer has too many meetings.")
  end
  local om = { organizer = app.user.username, etag = new_etag(), put_guid = fmt.uuid(host.random(16)),
               conferenceId = tostring(math.random(1000000, 9999999)) }
  local ok, why, name = apply(om, input, true)
  if not ok then return reply.bad_parameter(ctx, why, name) end
  local id
  repeat id = host.random(4):upper() until not store.by_id[id] and not meetings.get(id)
  om.id = id
  om.meeting = assert(meetings.add{ id = id, organizer = om.organizer, subject = om.subject, lobby = true })
  sync_meeting(om)
  store.list[#store.list + 1] = om
  store.by_id[id] = om
  return with_etag(ctx, 200, app, om)
end

-- If-Match: "123" or 123 (the etag, quoted or not).
local function if_match(req)
  local v = req.headers["if-match"]
  if not v then return nil end
  return v:match('^%s*W?/?"?([^"]*)"?%s*$')
end

local function update(ctx, app, om)
  local want = if_match(ctx.req)
  if not want then
    return reply.error(ctx, 428, "PreconditionRequired", nil, "The operation requires an If-Match precondition.")
  end
  if want ~= om.etag then
    return reply.error(ctx, 412, "PreconditionFailed", nil,
      "An If-Match precondition was not met: the meeting changed since it was read.")
  end
  local input, refusal = reply.input(ctx)
  if not input then return table.unpack(refusal) end
  if reply.field(input, om.put_guid) ~= PUT_ECHO then
    return reply.bad_parameter(ctx, "The PUT must pass the resource's \"" .. om.put_guid .. "\" property.", om.put_guid)
  end
  for _, fixed in ipairs{ "onlineMeetingId", "onlineMeetingUri", "organizerUri" } do
    local v = reply.field(input, fixed)
    local now = fixed == "onlineMeetingId" and om.id or fixed == "onlineMeetingUri" and om.meeting.uri or nil
    if v ~= nil and now and v ~= now then
      return reply.bad_parameter(ctx, fixed .. " cannot change.", fixed)
    end
  end
  local ok, why, name = apply(om, input, false)
  if not ok then return reply.bad_parameter(ctx, why, name) end
  om.etag = new_etag()
  sync_meeting(om)
  return with_etag(ctx, 200, app, om)
end

local function delete(app, om)
  local store = mine(app.user.username)
  store.by_id[om.id] = nil
  for i, x in ipairs(store.list) do
    if x == om then table.remove(store.list, i) break end
  end
  meetings.mark_ended(om.meeting)
  return reply.no_content()
end

-- <app>/onlineMeetings<rest>
function M.route(ctx, app, rest)
  if app.anonymous then return reply.not_found(ctx) end
  if rest == "" then
    return reply.get_only(ctx, function() return online_meetings_resource(app) end)
  elseif rest == "/myOnlineMeetings" then
    return reply.by_method(ctx, {
      GET = function() return reply.resource(ctx, 200, meetings_resource(app)) end,
      POST = function()
        if not directory.has_scope(app.scopes, "Meetings.ReadWrite") then
          return reply.missing_scope(ctx, "Meetings.ReadWrite")
        end
        return schedule(ctx, app)
      end,
    })
  elseif rest == "/defaultValues" then
    return reply.get_only(ctx, function() return defaults_resource(app) end)
  elseif rest == "/eligibleValues" then
    return reply.get_only(ctx, function() return eligible_resource(app) end)
  elseif rest == "/policies" then
    return reply.get_only(ctx, function() return policies_resource(app) end)
  elseif rest == "/phoneDialInInformation" then
    return reply.get_only(ctx, function() return dial_in_resource(app) end)
  end
  local id = rest:match("^/myOnlineMeetings/([^/]+)$")
  local om = id and mine(app.user.username).by_id[id]
  if not om then return reply.not_found(ctx) end
  return reply.by_method(ctx, {
    GET = function() return with_etag(ctx, 200, app, om) end,
    PUT = function() return update(ctx, app, om) end,
    DELETE = function() return delete(app, om) end,
  })
end

-- For the control API: the scheduled meetings of `username` (or everyone's).
function M.list(username)
  local out = {}
  for user, store in pairs(by_user) do
    if not username or user == username then
      for _, om in ipairs(store.list) do
        out[#out + 1] = { id = om.id, organizer = user, subject = om.subject, etag = om.etag,
                          accessLevel = om.accessLevel, uri = om.meeting.uri }
      end
    end
  end
  table.sort(out, function(a, b) return a.id < b.id end)
  return out
end

return M
