--- Scheduled meetings (myOnlineMeetings: ScheduleAnOnlineMeeting.md,
-- UpdateAnOnlineMeeting.md, OnlineMeetingTasks.md, myOnlineMeeting_ref.md,
-- onlineMeetingDefaultValues_ref.md, onlineMeetingEligibleValues_ref.md,
-- onlineMeetingPolicies_ref.md, phoneDialInInformation_ref.md).
--
-- A meeting object exposes its properties by name (`onlineMeetingUri`,
-- `joinUrl`, `onlineMeetingId`, `conferenceId`, `subject`, `accessLevel` ...)
-- and has `update`, `delete`, `join`, `dial_in` and `refresh`. Values of the
-- settings the server's eligible values list (`accessLevel`,
-- `automaticLeaderAssignment`, `entryExitAnnouncement`,
-- `lobbyBypassForPhoneUsers`) are checked against them before anything is
-- sent; the server's default and eligible values are read once a session
-- (at sign-in, in its batch, where the server offers one).
-- @module ucwa.meetings
local errors = require "ucwa.errors"
local resource = require "ucwa.resource"
local update = require "ucwa.update"

local meetings = {}

local Meeting = resource.class("meeting")
meetings.Meeting = Meeting
resource.register("myOnlineMeeting", Meeting)
resource.register("myAssignedOnlineMeeting", Meeting)

-- What schedule_meeting and update take: name -> type.
local FIELDS = {
  subject = "string", description = "string", expirationTime = "string", attendees = "table",
  leaders = "table", accessLevel = "string", automaticLeaderAssignment = "string",
  lobbyBypassForPhoneUsers = "string", phoneUserAdmission = "string", entryExitAnnouncement = "string",
}
meetings.FIELDS = FIELDS

-- property -> the eligible values list that bounds it
local ELIGIBLE = {
  accessLevel = "accessLevels", automaticLeaderAssignment = "automaticLeaderAssignments",
  entryExitAnnouncement = "entryExitAnnouncements", lobbyBypassForPhoneUsers = "lobbyBypassForPhoneUsersSettings",
}
local MAX_TEXT = { subject = 250 } -- the limit the invitation pages state for a subject

-- Raises for an argument of the wrong shape (a bot's mistake).
local function check_args(args, what)
  if type(args) ~= "table" then error("bad argument #1 to '" .. what .. "' (table expected)", 4) end
  for k, v in pairs(args) do
    local want = FIELDS[k]
    if not want then error("bad argument #1 to '" .. what .. "' (unknown field '" .. tostring(k) .. "')", 4) end
    if type(v) ~= want then
      error("bad argument #1 to '" .. what .. "' (" .. k .. ": " .. want .. " expected)", 4)
    end
    if want == "table" then
      for i, x in ipairs(v) do
        if type(x) ~= "string" or not x:lower():match("^sip:[^%s@]+@%S+$") then
          error("bad argument #1 to '" .. what .. "' (" .. k .. "[" .. i .. "]: a sip: URI expected)", 4)
        end
      end
    end
  end
end

-- The onlineMeetings resource's link `rel` (embedded in the application).
local function link(session, rel)
  return resource.embedded_link(session.application, "onlineMeetings", rel)
end

local function no_link(rel)
  return errors.new{ code = "NotAllowed", subcode = "NoLink",
    message = "not signed in, or the server gives no " .. rel .. " link (scheduling needs Meetings.ReadWrite)" }
end

-- Reads (once a session) the resource at the onlineMeetings link `rel`; done(model, err).
-- (kept by href: a new application has new ones)
local function values(session, rel, done)
  session.meeting_values = session.meeting_values or {}
  local href = link(session, rel)
  if not href then return done(nil, no_link(rel)) end
  local cached = session.meeting_values[href]
  if cached then return done(cached) end
  session:send({ method = "GET", url = href }, function(model, err)
    if type(model) ~= "table" then return done(nil, err or no_link(rel)) end
    session.meeting_values[href] = model
    done(model)
  end)
end

--- The URLs sign-in reads for scheduling: the default and eligible values.
-- @tparam table session
-- @treturn table
function meetings.initial_reads(session)
  local urls = {}
  for _, rel in ipairs{ "onlineMeetingDefaultValues", "onlineMeetingEligibleValues" } do
    urls[#urls + 1] = link(session, rel)
  end
  return urls
end

--- Keeps what sign-in read at `href` (see initial_reads).
-- @tparam table session
-- @string href
-- @tparam table|false model
function meetings.store(session, href, model)
  session.meeting_values = session.meeting_values or {}
  if type(model) == "table" then session.meeting_values[href] = model end
end

-- nil, or the validation error for `args` against the eligible values model.
local function refuse(args, eligible)
  for prop, max in pairs(MAX_TEXT) do
    if args[prop] and #args[prop] > max then
      return errors.validation(prop .. " is longer than " .. max .. " characters")
    end
  end
  local props = eligible and eligible.properties or {}
  for prop, list_name in pairs(ELIGIBLE) do
    local v, list = args[prop], props[list_name]
    if v ~= nil and type(list) == "table" then
      local ok = false
      for _, x in ipairs(list) do if x == v then ok = true end end
      if not ok then
        local e = errors.validation(("%s %q is not among the server's eligible values (%s)")
          :format(prop, v, table.concat(list, ", ")))
        e.parameter = prop
        return e
      end
    end
  end
end

local function copy(t)
  local out = {}
  for k, v in pairs(t) do out[k] = v end
  return out
end

--- Schedules a meeting (POST myOnlineMeetings). cb(meeting, err). Values
-- outside the server's eligible values are refused before anything is sent.
-- @tparam table session
-- @tparam table args see client:schedule_meeting
-- @tparam[opt] function cb
function meetings.schedule(session, args, cb)
  check_args(args, "schedule_meeting")
  local body = copy(args)
  body.attendees = body.attendees or {}
  body.leaders = body.leaders or {}
  return session.async:call(cb, function(done)
    local href = link(session, "myOnlineMeetings")
    if not href then return done(nil, no_link("myOnlineMeetings")) end
    values(session, "onlineMeetingEligibleValues", function(eligible)
      local err = refuse(body, eligible)
      if err then return done(nil, err) end
      session:send({ method = "POST", url = href, body = body }, function(model, e, resp)
        if e then return done(nil, e) end
        if type(model) ~= "table" then
          return done(nil, errors.new{ code = "BadResponse", message = "myOnlineMeetings answered with no meeting" })
        end
        local m = resource.new(session, model, "myOnlineMeeting")
        update.remember_etag(m, resp)
        done(m)
      end)
    end)
  end)
end

--- The meetings the user has scheduled (GET myOnlineMeetings). cb(list, err).
-- @tparam table session
-- @tparam[opt] function cb
function meetings.list(session, cb)
  return session.async:call(cb, function(done)
    local href = link(session, "myOnlineMeetings")
    if not href then return done(nil, no_link("myOnlineMeetings")) end
    session:send({ method = "GET", url = href }, function(model, err)
      if err then return done(nil, err) end
      local out = {}
      local emb = type(model) == "table" and model.embedded or {}
      for _, rel in ipairs{ "myOnlineMeeting", "myAssignedOnlineMeeting" } do
        local list = emb[rel]
        if list and list.rel then list = { list } end
        for _, m in ipairs(list or {}) do out[#out + 1] = resource.new(session, m, rel) end
      end
      done(out)
    end)
  end)
end

-- cb(the properties of the onlineMeetings resource's `rel` resource, err).
local function properties(session, rel, cb)
  return session.async:call(cb, function(done)
    values(session, rel, function(m, err) done(m and m.properties, err) end)
  end)
end

--- The server's default values for new meetings (onlineMeetingDefaultValues). cb(properties, err).
function meetings.defaults(session, cb)
  return properties(session, "onlineMeetingDefaultValues", cb)
end

--- The server's eligible values (onlineMeetingEligibleValues). cb(properties, err).
function meetings.eligible(session, cb)
  return properties(session, "onlineMeetingEligibleValues", cb)
end

--- The admin policies for the user's meetings (onlineMeetingPolicies). cb(properties, err).
function meetings.policies(session, cb)
  return properties(session, "onlineMeetingPolicies", cb)
end

--- Changes the meeting (PUT with If-Match and the echo property, see
-- ucwa.update): `props` takes the fields of schedule_meeting. Values outside
-- the eligible values are refused before sending; a `412 PreconditionFailed`
-- (changed meanwhile) reads the meeting again and reports. cb(meeting, err).
-- @tparam table props
-- @tparam[opt] function cb
function Meeting:update(props, cb)
  check_args(props, "update")
  local session = self._session
  return session.async:call(cb, function(done)
    values(session, "onlineMeetingEligibleValues", function(eligible)
      local err = refuse(props, eligible)
      if err then return done(nil, err) end
      update.put(self, props, done)
    end)
  end)
end

--- Deletes the meeting (DELETE). cb(true, err).
function Meeting:delete(cb)
  local session = self._session
  return session.async:call(cb, function(done)
    session:send({ method = "DELETE", url = self.href, raw = true }, function(_, err)
      if err then return done(nil, err) end
      self.deleted = true
      done(true)
    end)
  end)
end

--- Joins the meeting: client:join_meeting with its onlineMeetingUri (args:
-- subject, importance, threadId, operationId). Returns the onlineMeetingInvitation.
-- @tparam[opt] table args
-- @tparam[opt] function cb
function Meeting:join(args, cb)
  if type(args) == "function" then args, cb = nil, args end
  local a = copy(args or {})
  a.onlineMeetingUri = self.properties.onlineMeetingUri
  if a.subject == nil then a.subject = self.properties.subject end
  return self._session.client:join_meeting(a, cb)
end

--- The dial-in information (phoneDialInInformation: conferenceId, tollNumber,
-- tollFreeNumbers ...), with the meeting's own conferenceId. cb(properties, err).
function Meeting:dial_in(cb)
  local session = self._session
  return session.async:call(cb, function(done)
    values(session, "phoneDialInInformation", function(m, err)
      if not m then return done(nil, err) end
      local info = copy(m.properties or {})
      info.conferenceId = self.properties.conferenceId or info.conferenceId
      done(info)
    end)
  end)
end

return meetings
