-- ucwa-sim: the control API under /_sim/ (JSON in, JSON out), for tests and
-- prototyping: the state dump (with what each host received), scenarios
-- (meetings, lobby, invitations, messages, typing), fault injection and
-- planted links.  sim/README.md documents every
-- endpoint.  Lists in answers are always JSON arrays, empty ones too.
local host = require "ucwasim.host"
local cjson = require "cjson.safe"
local applications = require "applications"
local auth = require "auth"
local console = require "console"
local conversations = require "conversations"
local credentials = require "credentials"
local directory = require "directory"
local events = require "events"
local faults = require "faults"
local fmt = require "formats"
local hosts = require "hosts"
local invitations = require "invitations"
local meetings = require "meetings"
local messaging = require "messaging"
local participants = require "participants"
local plants = require "plants"
local presence = require "presence"
local reply = require "reply"
local stats = require "stats"

local M = {}

local base = ""
local array = fmt.array
local norm = directory.normalize

local function answer(status, t)
  return reply.json(status, t or {}, nil, fmt.json)
end

local function fail(status, msg)
  return answer(status, { error = msg })
end

---------------------------------------------------------------------------
-- the state dump

local function meeting_info(m)
  local members = array()
  for _, x in ipairs(meetings.members(m)) do
    members[#members + 1] = { key = x.key, name = x.name, uri = x.uri, state = x.state, role = x.role,
      virtual = x.conv == nil, app = x.conv and x.conv.app.id or nil, anonymous = x.anonymous,
      typing = participants.is_typing(m, x) }
  end
  return { id = m.id, uri = m.uri, key = m.key, organizer = m.organizer, subject = m.subject,
    lobby = m.lobby, ended = m.ended, members = members }
end

-- A host, its settings and what it received (credentials.lua).
local function host_info(h)
  local c = credentials.snapshot(h)
  return { name = h.name, address = h.address, scheme = h.scheme, port = h.port, url = h.base,
    http_port = h.http_port, http_url = h.http_base, max_version = h.max_version, hostile = h.hostile,
    user = h.user, root_redirect = h.root and h.root.redirect or nil,
    requests = c.requests, authorization = c.authorization, token_service = c.token_service }
end

local function hosts_info()
  local t = {}
  for _, h in ipairs(hosts.list()) do t[h.name] = host_info(h) end
  return t
end

local function faults_info()
  local f = faults.describe()
  f.failures = array(f.failures)
  return f
end

local function state()
  local apps = array()
  local queued, pgets = 0, 0
  for _, app in ipairs(applications.list()) do
    local info = applications.info(app)
    apps[#apps + 1] = info
    queued = queued + info.queued
    if info.pget then pgets = pgets + 1 end
  end
  local list = array()
  for _, m in ipairs(meetings.list()) do
    list[#list + 1] = meeting_info(m)
  end
  return {
    base = base,
    applications = apps,
    application_count = #apps,
    pgets_held = pgets,
    suspended_requests = host.suspended(),
    console_streams = console.streams(),
    connections = host.connections(),
    events_queued = queued,
    tokens = auth.count(),
    meetings = list,
    messaging = messaging.info(),
    stats = stats.snapshot(),
    batching = require("batching").snapshot(), -- multipart/batching POSTs and their parts
    scheduled_meetings = array(require("online_meetings").list()),
    faults = faults_info(),
    hosts = hosts_info(),
    discovery = hosts.discovery().name,
    plants = array(plants.describe()),
  }
end

---------------------------------------------------------------------------
-- actions

local function count_of(t, default)
  local n = tonumber(t.count or default)
  if not n or n < 0 or n ~= math.floor(n) then return nil end
  return n
end

local PRIORITIES = { realtime = true, high = true, medium = true, low = true }

-- count, priority from a body, or nil and the refusal.
local function event_args(t)
  local n = count_of(t, 1)
  if not n or n > 1000000 then return nil, fail(400, "count must be a whole number up to 1000000") end
  local prio = t.priority or "high"
  if not PRIORITIES[prio] then return nil, fail(400, "priority must be realtime, high, medium or low") end
  return n, prio
end

local synthetic_seq = setmetatable({}, { __mode = "k" }) -- app -> last sequence number

-- Queues n synthetic events (`updated note`, titled 1, 2, ...); returns the
-- first and last numbers.
local function synthetic(app, n, prio)
  local first = (synthetic_seq[app] or 0) + 1
  local last = first + n - 1
  local me, note = app.href .. "/me", app.href .. "/me/note"
  for i = first, last do
    events.emit(app, prio, "me", me, { type = "updated", link = { rel = "note", href = note, title = tostring(i) } })
  end
  synthetic_seq[app] = last
  return first, last
end

local function app_action(app, action, t)
  if action == "forget" then
    applications.delete(app, "The application resource does not exist.")
    return answer(200, { forgotten = app.id })
  elseif action == "resync" then
    events.resync(app)
    return answer(200, { resync = app.id })
  elseif action == "resume" then
    events.reset(app)
    return answer(200, { resume = app.id })
  elseif action == "unavailable" then
    -- the server forgets makeMeAvailable: reportMyActivity gets 409 MakeMeAvailableRequired
    return answer(200, { unavailable = app.id, was_available = applications.forget_availability(app) })
  elseif action == "expire" then
    applications.expire(app)
    return answer(200, { expired = app.id })
  elseif action == "pget-replaced" then
    -- another client's P-GET replaces the pending one (or the next one)
    return answer(200, { replaced = events.replace_foreign(app) and "pending" or "next" })
  elseif action == "events" then
    local n, prio = event_args(t)
    if not n then return prio end
    local first, last = synthetic(app, n, prio)
    -- released_at: when a waiting P-GET was handed the events (wall clock, s)
    return answer(200, { first = first, last = last, released_at = host.wall_seconds() })
  end
  return fail(404, "unknown application action " .. action)
end

-- The member the body's `user` names, or nil.
local function named_member(m, t)
  local key = norm(t.user)
  return key and meetings.member(m, key)
end

-- Who speaks or types: `from`, or by default the organiser, who joins the
-- meeting (as a virtual participant) if it is not in.  nil and a message
-- when the meeting has ended.
local function speaker(m, from)
  if from ~= nil then
    return norm(from) or nil, "from must be a user name"
  end
  if m.ended then return nil, "the meeting has ended" end
  local member, err = participants.bring_in(m, m.organizer)
  if not member then return nil, err end
  return member.key
end

local function meeting_action(m, action, t)
  if action == "" then
    return answer(200, meeting_info(m))
  elseif action == "/end" then
    conversations.end_meeting(m)
    return answer(200, meeting_info(m))
  elseif action == "/join" then
    local u = norm(t.user)
    if not u then return fail(400, "user is required") end
    if m.ended then return fail(409, "the meeting has ended") end
    if meetings.member(m, u) then return fail(409, u .. " is already in the meeting") end
    local rec = directory.user(u)
      or { username = u, uri = "sip:" .. u, name = t.name or u, anonymous = t.anonymous ~= false }
    local member = meetings.new_member(m, rec, nil, t.name)
    local lobby = meetings.needs_lobby(m, member)
    if t.lobby ~= nil then lobby = t.lobby and true or false end
    participants.virtual_join(m, member, lobby)
    return answer(200, { key = member.key, state = member.state })
  elseif action == "/promote" or action == "/demote" then
    local member = named_member(m, t)
    if not member then return fail(404, "no such participant") end
    participants.set_role(m, member, action == "/promote" and "Leader" or "Attendee")
    return answer(200, { key = member.key, role = member.role })
  elseif action == "/leave" then
    local member = named_member(m, t)
    if not member then return fail(404, "no such participant") end
    conversations.remove(m, member, conversations.REASONS.removed)
    return answer(200, { left = member.key })
  elseif action == "/admit" or action == "/reject" then
    local list = {}
    if t.user then
      local member = named_member(m, t)
      if not member or member.state ~= "lobby" then return fail(404, "no such participant in the lobby") end
      list[1] = member
    else
      for _, x in ipairs(meetings.members(m)) do
        if x.state == "lobby" then list[#list + 1] = x end
      end
    end
    local keys = array()
    for _, member in ipairs(list) do
      if action == "/admit" then conversations.admit(m, member) else conversations.reject(m, member) end
      keys[#keys + 1] = member.key
    end
    return answer(200, { [action == "/admit" and "admitted" or "rejected"] = keys })
  elseif action == "/invite" then
    local to = norm(t.to)
    if not to then return fail(400, "to is required") end
    local from = norm(t.from) or m.organizer
    local record, err = invitations.invite(m, from, to, applications.available_for(to), t.message)
    if not record then return fail(409, err) end
    return answer(200, { invitation = record.id, state = record.state })
  elseif action == "/typing" then
    local from, err = speaker(m, t.from)
    local on = t.typing ~= false
    local ok
    if from then ok, err = participants.set_typing(m, from, on) end
    if not ok then return fail(409, err) end
    return answer(200, { key = from, typing = on })
  elseif action == "/message" then
    if type(t.text) ~= "string" and type(t.html) ~= "string" then
      return fail(400, "text or html is required")
    end
    local from, err = speaker(m, t.from)
    local ok
    if from then
      local text = t.text or fmt.strip_html(t.html)
      ok, err = conversations.say(m, from, fmt.clean(text), t.html and fmt.clean(t.html) or nil)
    end
    if not ok then return fail(409, err) end
    return answer(200, { sent = true })
  end
  return fail(404, "unknown meeting action")
end

-- The host a fault body names (`host`), or nil; err when it names none.
local function fault_host(t)
  if t.host == nil then return nil end
  local h = hosts.get(t.host)
  if not h then return nil, "no host " .. tostring(t.host) end
  return h
end

local function fault_action(action, t)
  if action == "drop-pget" then
    local n = count_of(t, 1)
    if not n then return fail(400, "count must be a whole number") end
    faults.drop_pgets(n)
  elseif action == "delay" then
    local n = count_of(t, 1)
    local secs = tonumber(t.seconds)
    if not n or not secs or secs < 0 then return fail(400, "count and seconds are required") end
    faults.delay_next({ count = n, seconds = secs, match = t.match })
  elseif action == "clear" then
    faults.clear()
  elseif faults.KINDS[action] then
    local n = count_of(t, 1)
    if not n then return fail(400, "count must be a whole number") end
    local h, err = fault_host(t)
    if err then return fail(404, err) end
    if t.match ~= nil and type(t.match) ~= "string" then return fail(400, "match must be a string") end
    local spec = { kind = action, count = n, match = t.match, host = h and h.name }
    if action == "fail" then
      local status = tonumber(t.status or 503)
      if not status or status < 400 or status > 599 then return fail(400, "status must be 400..599") end
      for _, k in ipairs({ "parameters", "debugInfo", "headers" }) do
        if t[k] ~= nil and type(t[k]) ~= "table" then return fail(400, k .. " must be an object") end
      end
      for name, v in pairs(t.headers or {}) do
        if type(name) ~= "string" or not name:match("^[%w!#$%%&'*+.^_`|~-]+$")
            or (type(v) ~= "string" and type(v) ~= "number") or tostring(v):find("[%c]") then
          return fail(400, "headers must map header names to values without control characters")
        end
      end
      spec.status, spec.code, spec.subcode, spec.message = math.floor(status), t.code or "ServiceFailure",
        t.subcode, t.message
      spec.parameters, spec.debugInfo, spec.headers, spec.retry_after = t.parameters, t.debugInfo, t.headers,
        t.retry_after
    elseif action == "pool-down" then
      -- the pool is down: 502 on its applications resource; with move_to,
      -- its users are homed on another pool from now on
      spec.host = spec.host or hosts.home("").name
      if t.move_to ~= nil then
        local to = hosts.get(t.move_to)
        if not to then return fail(404, "no host " .. tostring(t.move_to)) end
        hosts.move(hosts.get(spec.host), to)
        spec.move_to = to.name
      end
    end
    faults.fail_next(spec)
  else
    return fail(404, "unknown fault " .. action)
  end
  return answer(200, faults_info())
end

-- POST /_sim/hosts/<name> { max_version? }
local function host_action(h, t)
  if t.max_version ~= nil then
    local v = tonumber(t.max_version)
    if not v or v < 1 then return fail(400, "max_version must be a number, 1 or more") end
    h.max_version = v
  end
  return answer(200, host_info(h))
end

---------------------------------------------------------------------------
-- routes

local function body(ctx)
  local b = ctx.req.body
  if b == "" then return {} end
  local t = cjson.decode(b)
  if type(t) ~= "table" then return nil end
  return t
end

-- Runs act(obj, ...) on what `find(id)` returns, or answers 404.
local function with(find, id, noun, act, ...)
  local obj = find(id)
  if not obj then return fail(404, "no " .. noun .. " " .. id) end
  return act(obj, ...)
end

-- What the console (console.lua) shows: the listeners it is served on,
-- the meetings, applications, faults and directory users.
local function console_views()
  local function listen()
    local list = array()
    for _, h in ipairs(hosts.list()) do
      list[#list + 1] = { name = h.name, url = h.base, address = h.address, port = h.port, http_url = h.http_base }
    end
    return list
  end
  local function app_view(app)
    local info = applications.info(app)
    info.name = app.user.name
    return info
  end
  return {
    meeting = meeting_info, app = app_view, faults = faults_info,
    state = function()
      local list = array()
      for _, m in ipairs(meetings.list()) do list[#list + 1] = meeting_info(m) end
      return { base = base, listen = listen(), meetings = list, apps = applications.list(),
        faults = faults_info(), users = array(directory.names()) }
    end,
  }
end

-- Starts the control API; `base_url` is shown in the state dump.
function M.start(base_url)
  base = base_url
  console.start(console_views())
end

function M.handle(ctx)
  local req = ctx.req
  local path, m = req.path, req.method
  if req.too_large then return fail(413, "the body is too large") end
  if path == "/_sim/console" or path:sub(1, 14) == "/_sim/console/" then return console.handle(ctx) end
  local t = body(ctx)
  if not t then return fail(400, "the body must be a JSON object") end
  if path == "/_sim/state" then
    if m ~= "GET" then return fail(405, "GET only") end
    return answer(200, state())
  end
  if m ~= "POST" and m ~= "GET" then return fail(405, "GET or POST") end
  local id, action = path:match("^/_sim/apps/([^/]+)/([%a%-]+)$")
  if id then
    return with(applications.get, id, "application", app_action, action, t)
  end
  if path == "/_sim/meetings" and m == "POST" then
    if type(t.organizer) ~= "string" then return fail(400, "organizer is required") end
    if t.id and meetings.get(t.id) then return fail(409, "meeting " .. t.id .. " exists") end
    return answer(201, meeting_info(meetings.add(t)))
  end
  local mid, maction = path:match("^/_sim/meetings/([^/]+)(.*)$")
  if mid then
    return with(meetings.get, mid, "meeting", meeting_action, maction, t)
  end
  local iid = path:match("^/_sim/invitations/(%d+)$")
  if iid then
    local r = invitations.record(tonumber(iid))
    if not r then return fail(404, "no invitation " .. iid) end
    return answer(200, r)
  end
  if path == "/_sim/events" and m == "POST" then
    -- synthetic events for every application (benchmarks)
    local n, prio = event_args(t)
    if not n then return prio end
    local list = applications.list()
    for _, app in ipairs(list) do
      synthetic(app, n, prio)
    end
    return answer(200, { applications = #list, events = #list * n })
  end
  local fault = path:match("^/_sim/faults/([%w%-]+)$")
  if fault and m == "POST" then
    return fault_action(fault, t)
  end
  if path == "/_sim/tokens/expire" and m == "POST" then
    return answer(200, { expired = auth.expire(t.token, norm(t.user)) })
  end
  if path == "/_sim/users" and m == "POST" then
    local home = t.home ~= nil and hosts.get(t.home)
    if t.home ~= nil and not home then return fail(404, "no host " .. tostring(t.home)) end
    local u, err = directory.add(t)
    if not u then return fail(400, err) end
    if home then hosts.set_home(u.username, home) end
    return answer(201, { username = u.username, home = hosts.home(u.username).name })
  end
  local uname, uaction = path:match("^/_sim/users/([^/]+)/(%a+)$")
  if uname and messaging.has_control(uaction, m) then
    return answer(messaging.control(uaction, uname, t))
  end
  local puser, ppart = uname, uaction
  if puser and presence.CONTROL[ppart] then
    local u = directory.user(puser)
    if not u then return fail(404, "no user " .. puser) end
    local result, err = presence.control(u.username, ppart, m == "POST" and t or nil)
    if not result then return fail(400, err) end
    return answer(200, result)
  end
  if path == "/_sim/people" then
    if m == "POST" then
      local _, err = presence.settings(t)
      if err then return fail(400, err) end
    end
    local list, ended = presence.describe()
    for _, s in ipairs(list) do s.members = array(s.members); s.extensions = array(s.extensions) end
    return answer(200, { settings = presence.settings(), subscriptions = array(list), ended = ended })
  end
  if path == "/_sim/hosts" then
    return answer(200, hosts_info())
  end
  local hname = path:match("^/_sim/hosts/([^/]+)$")
  if hname then
    local h = hosts.get(hname)
    if not h then return fail(404, "no host " .. hname) end
    if m == "GET" then return answer(200, host_info(h)) end
    return host_action(h, t)
  end
  if path == "/_sim/batching" and m == "POST" then -- garbled batch answers (batching.lua)
    local ok, err = require("batching").garble(t)
    if not ok then return fail(400, err) end
    return answer(200, { garble = t.garble })
  end
  if path == "/_sim/plants" and m == "POST" then
    local p, err = plants.plant(t)
    if not p then return fail(400, err) end
    return answer(200, { plants = array(plants.describe()) })
  end
  if path == "/_sim/plants/clear" and m == "POST" then
    plants.clear()
    return answer(200, { plants = array() })
  end
  return fail(404, "unknown control path " .. path)
end

return M
