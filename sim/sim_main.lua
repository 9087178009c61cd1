-- ucwa-sim: request dispatch, authentication, applications and the event
-- channel.  Meetings and conversations are in sim_meet.lua, the control API in
-- sim_control.lua, the formats in sim_fmt.lua.  The C host (main.c) calls
-- init(options, base_url) once, handle(req) per request and tick() from its loop.
local host = require "ucwasim.host"
local cjson = require "cjson.safe"
local fmt = require "sim_fmt"

local M = {}

local S = {
  host = host,
  fmt = fmt,
  apps = {},        -- id -> app
  app_order = {},   -- ids in creation order (for the state dump)
  tokens = {},      -- token -> { identity=, anonymous=, meeting=, scopes=, expires= }
  users = {},       -- username -> { username=, password=, name=, uri=, scopes= }
  meetings = {},    -- id -> meeting
  faults = { drop_pget = 0, fail = nil, delay = nil },
  stats = { requests = 0, events = 0, batches = 0 },
}
M.S = S

local ALL_SCOPES = { "Conversations.Initiate", "Conversations.Receive", "Contacts.ReadWrite",
  "User.ReadWrite", "Meetings.ReadWrite" }
S.ALL_SCOPES = ALL_SCOPES

local defaults = {
  ["token-lifetime"] = 28800,
  ["anon-token-lifetime"] = 3600,
  ["app-idle"] = 900,
  ["resume-after"] = 600,
  ["pget-timeout"] = 180,
  ["min-timeout"] = 180,
  ["min-aggregation"] = 5,
  ["step-delay"] = 0.05,
  ["lobby-timeout"] = 900,
  ["invite-timeout"] = 60,
  ["typing-timeout"] = 5,
}

local AUTODISCOVER = "/autodiscover/autodiscoverservice.svc/root"
local USER_PATH = AUTODISCOVER .. "/oauth/user"
local XFRAME_PATH = "/autodiscover/xframe"
local TOKEN_PATH = "/WebTicket/oauth/token"
local APPS_PATH = "/ucwa/oauth/v1/applications"
local ANON_APPS_PATH = "/ucwa/anonymous/v1/applications"
S.APPS_PATH, S.ANON_APPS_PATH = APPS_PATH, ANON_APPS_PATH
local MAX_BATCH = 1000

---------------------------------------------------------------------------
-- Timers: a binary heap of { at=, fn=, dead= }.

local heap, seq = {}, 0

local function heap_less(a, b)
  return a.at < b.at or (a.at == b.at and a.seq < b.seq)
end

local function heap_push(t)
  heap[#heap + 1] = t
  local i = #heap
  while i > 1 do
    local p = i // 2
    if heap_less(heap[i], heap[p]) then
      heap[i], heap[p] = heap[p], heap[i]
      i = p
    else
      break
    end
  end
end

local function heap_pop()
  local top = heap[1]
  local last = table.remove(heap)
  if #heap > 0 then
    heap[1] = last
    local i, n = 1, #heap
    while true do
      local l, r, m = 2 * i, 2 * i + 1, i
      if l <= n and heap_less(heap[l], heap[m]) then m = l end
      if r <= n and heap_less(heap[r], heap[m]) then m = r end
      if m == i then break end
      heap[i], heap[m] = heap[m], heap[i]
      i = m
    end
  end
  return top
end

function S.now()
  return host.now()
end

function S.after(delay, fn)
  seq = seq + 1
  local t = { at = host.now() + math.max(delay or 0, 0), seq = seq, fn = fn }
  heap_push(t)
  return t
end

function S.cancel(t)
  if t then t.dead = true end
end

local function run_protected(fn, ...)
  local ok, err = xpcall(fn, debug.traceback, ...)
  if not ok then
    io.stderr:write("ucwa-sim: ", tostring(err), "\n")
  end
end

function M.tick()
  local now = host.now()
  local budget = 100000
  while heap[1] and (heap[1].dead or heap[1].at <= now) and budget > 0 do
    local t = heap_pop()
    if not t.dead then
      t.dead = true
      run_protected(t.fn)
    end
    budget = budget - 1
  end
  while heap[1] and heap[1].dead do
    heap_pop()
  end
  if heap[1] then
    return math.max(heap[1].at - host.now(), 0)
  end
  return nil
end

---------------------------------------------------------------------------
-- Responses

local function base_headers(ctx, extra)
  local h = { ["Cache-Control"] = "no-cache", ["X-Content-Type-Options"] = "nosniff",
    ["X-MS-Server-Fqdn"] = "ucwa-sim.contoso.com" }
  if ctx and ctx.ctype then
    h["Content-Type"] = ctx.ctype
  end
  for k, v in pairs(extra or {}) do
    h[k] = v
  end
  return h
end
S.base_headers = base_headers

-- A reply whose body fmt.<kind>_xml or fmt.<kind>_json writes from `...`,
-- in the request's format.
local function reply_as(ctx, status, extra, kind, ...)
  local body = fmt[kind .. (ctx.fmt == "xml" and "_xml" or "_json")](...)
  return status, base_headers(ctx, extra), body
end

-- An error in the request's format (JSON or XML).
function S.err(ctx, status, code, subcode, message, extra)
  return reply_as(ctx, status, extra, "error", code, subcode, message)
end

function S.send(ctx, status, res, extra)
  return reply_as(ctx, status, extra, "resource", res)
end

function S.no_content(_, extra)
  local h = base_headers(nil, extra)
  return 204, h, ""
end

function S.created(_, location)
  local h = base_headers(nil, { Location = location })
  return 201, h, ""
end

local function json_reply(status, t, extra)
  local h = { ["Content-Type"] = "application/json; charset=utf-8", ["Cache-Control"] = "no-store",
    Pragma = "no-cache" }
  for k, v in pairs(extra or {}) do h[k] = v end
  return status, h, cjson.encode(t)
end
S.json_reply = json_reply

---------------------------------------------------------------------------
-- Directory

local function user_record(u)
  assert(type(u) == "table" and type(u.username) == "string", "directory: user needs a username")
  local username = u.username:lower():gsub("^sip:", "")
  local local_part = username:match("^([^@]+)") or username
  return {
    username = username,
    password = u.password or "password",
    name = u.name or (local_part:sub(1, 1):upper() .. local_part:sub(2)),
    uri = "sip:" .. username,
    scopes = u.scopes or ALL_SCOPES,
    max_apps = u.max_apps,
  }
end

function S.add_meeting(m)
  assert(type(m) == "table" and type(m.organizer) == "string", "meeting needs an organizer")
  local organizer = m.organizer:lower():gsub("^sip:", "")
  local id = m.id or ("ADHOC" .. host.random(4):upper())
  local uri = m.uri or ("sip:" .. organizer .. ";gruu;opaque=app:conf:focus:id:" .. id)
  local meeting = {
    id = id,
    uri = uri,
    organizer = organizer,
    subject = m.subject or "",
    lobby = m.lobby ~= false,
    anonymous = m.anonymous ~= false,
    key = m.key or id,
    leaders = {},
    members = {},        -- key -> member
    member_order = {},   -- keys in join order
    typing = {},         -- key -> { member=, timer= } while that member types
    ended = false,
    thread = host.random(16),
  }
  meeting.leaders[organizer] = true
  for _, l in ipairs(m.leaders or {}) do
    meeting.leaders[l:lower():gsub("^sip:", "")] = true
  end
  S.meetings[id] = meeting
  return meeting
end

-- "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:DEMO1" -> meeting
function S.find_meeting(uri)
  if type(uri) ~= "string" then return nil end
  local want = uri:lower():gsub("%s", "")
  for _, m in pairs(S.meetings) do
    if m.uri:lower() == want then
      return m
    end
  end
  return nil
end

local function load_directory(path)
  local d
  if path then
    local f, err = io.open(path, "rb")
    if not f then error("cannot read directory file: " .. tostring(err), 0) end
    local text = f:read("a")
    f:close()
    local derr
    d, derr = cjson.decode(text)
    if type(d) ~= "table" then error("directory file is not JSON: " .. tostring(derr), 0) end
  else
    d = {
      users = {
        { username = "alice@contoso.com", name = "Alice Adams" },
        { username = "bob@contoso.com", name = "Bob Brown" },
        { username = "bot@contoso.com", name = "Meeting Bot" },
      },
      meetings = {
        { id = "DEMO1", organizer = "alice@contoso.com", subject = "Demo meeting", lobby = true },
      },
    }
  end
  for _, u in ipairs(d.users or {}) do
    local rec = user_record(u)
    S.users[rec.username] = rec
  end
  for _, m in ipairs(d.meetings or {}) do
    S.add_meeting(m)
  end
  S.anon_scopes = (d.anonymous and d.anonymous.scopes) or { "Conversations.Initiate", "Conversations.Receive" }
end

---------------------------------------------------------------------------
-- Authentication (AuthenticationInUCWA.md, CreateAnApplication.md)

local function challenge()
  return 'Bearer trusted_issuers="", client_id="00000004-0000-0ff1-ce00-000000000000", '
    .. 'MsRtcOAuth href="' .. S.base .. TOKEN_PATH .. '",'
    .. 'grant_type="urn:microsoft.rtc:windows,urn:microsoft.rtc:anonmeeting,password"'
end

local function unauthorized(diag)
  local h = { ["WWW-Authenticate"] = challenge(), ["Content-Type"] = "text/html",
    ["Cache-Control"] = "no-cache", ["X-MS-Server-Fqdn"] = "ucwa-sim.contoso.com" }
  if diag then
    h["X-Ms-diagnostics"] = diag
  end
  return 401, h, "<html><head><title>401 - Unauthorized</title></head><body>"
    .. "<h2>401 - Unauthorized: Access is denied due to invalid credentials.</h2></body></html>"
end

-- The token of a request: token record, or nil and a 401 answer.
local function authenticate(req)
  local auth = req.headers.authorization
  local tok = auth and auth:match("^%s*[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$")
  local rec = tok and S.tokens[tok]
  if not rec then
    return nil, { unauthorized(tok and '28070;source="ucwa-sim";reason="The web ticket is invalid."') }
  end
  if rec.expires <= host.now() then
    return nil, { unauthorized('28032;source="ucwa-sim";reason="The web ticket has expired."') }
  end
  return rec
end

local function has_scope(scopes, want)
  for _, s in ipairs(scopes or {}) do
    if s == want then return true end
  end
  return false
end
S.has_scope = has_scope

local function token_error(err, desc)
  return json_reply(400, { error = err, error_description = desc },
    { ["X-Ms-diagnostics"] = '28020;source="ucwa-sim";reason="' .. (desc or err) .. '"' })
end

local anon_seq = 0

local function issue_token(identity, anonymous, meeting, scopes)
  local tok = "cwt=AAEB" .. host.random(32)
  local life = anonymous and S.cfg["anon-token-lifetime"] or S.cfg["token-lifetime"]
  S.tokens[tok] = { token = tok, identity = identity, anonymous = anonymous, meeting = meeting,
    scopes = scopes, expires = host.now() + life, issued = host.now() }
  return json_reply(200, {
    access_token = tok,
    expires_in = math.floor(life),
    ms_rtc_identityscope = anonymous and "anonymous" or "local",
    token_type = "Bearer",
  })
end

local function token_endpoint(req)
  if req.method ~= "POST" then
    return json_reply(405, { error = "invalid_request", error_description = "POST only" }, { Allow = "POST" })
  end
  if not req.form or req.form_bad then
    return token_error("invalid_request", "the body must be application/x-www-form-urlencoded")
  end
  local f = req.form
  if f.ms_rtc_renew and f.ms_rtc_renew ~= "" then
    local old = S.tokens[f.ms_rtc_renew]
    if not old then
      return token_error("invalid_grant", "unknown token to renew")
    end
    return issue_token(old.identity, old.anonymous, old.meeting, old.scopes)
  end
  local grant = f.grant_type
  if grant == "password" then
    local name = (f.username or ""):lower():gsub("^sip:", "")
    local u = S.users[name]
    if not u or f.password ~= u.password then
      return token_error("invalid_grant", "the user name or password is incorrect")
    end
    return issue_token(u, false, nil, u.scopes)
  elseif grant == "urn:microsoft.rtc:anonmeeting" then
    local m = S.find_meeting(f.ms_rtc_conferenceuri)
    if not m or m.ended or not m.anonymous or f.password ~= m.key then
      return token_error("invalid_grant", "the conference or its key is not valid")
    end
    anon_seq = anon_seq + 1
    local key = "anon-" .. anon_seq .. "-" .. host.random(3)
    local identity = { username = key, name = "Guest", uri = "sip:" .. key .. "@anonymous.invalid",
      anonymous = true }
    return issue_token(identity, true, m.id, S.anon_scopes)
  elseif grant == nil or grant == "" then
    return token_error("invalid_request", "grant_type is missing")
  end
  return token_error("unsupported_grant_type", "grant type not supported")
end

---------------------------------------------------------------------------
-- Applications (CreateAnApplication.md, application_ref.md)

local app_seq = 100

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
    :link("batch", h .. "/batch")
    :link("events", h .. "/events?ack=" .. app.next_ack)
    :link("reportMyNetwork", h .. "/reportMyNetwork")
  res:embed("me", S.me_resource(app))
  res:embed("people", S.people_resource(app))
  if not app.anonymous then
    res:embed("onlineMeetings", fmt.resource("onlineMeetings", h .. "/onlineMeetings")
      :link("myOnlineMeetings", h .. "/onlineMeetings/myOnlineMeetings")
      :link("onlineMeetingDefaultValues", h .. "/onlineMeetings/defaultValues")
      :link("onlineMeetingEligibleValues", h .. "/onlineMeetings/eligibleValues")
      :link("onlineMeetingPolicies", h .. "/onlineMeetings/policies"))
  end
  res:embed("communication", S.communication_resource(app))
  return res
end
S.app_resource = app_resource

function S.me_resource(app)
  local h = app.href
  local u = app.user
  local res = fmt.resource("me", h .. "/me")
    :prop("name", u.name)
    :prop("uri", u.uri)
  if not app.anonymous then
    res:prop("emailAddresses", { u.username })
      :prop("endpointUri", u.uri .. ";opaque=user:epid:" .. app.epid .. ";gruu")
  end
  if not app.anonymous then
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
  end
  return res
end

function S.people_resource(app)
  local h = app.href .. "/people"
  return fmt.resource("people", h)
    :link("presenceSubscriptions", h .. "/presenceSubscriptions")
    :link("subscribedContacts", h .. "/subscribedContacts")
    :link("myGroups", h .. "/groups")
    :link("myContacts", h .. "/contacts")
    :link("search", h .. "/search")
end

function S.communication_resource(app)
  local h = app.href .. "/communication"
  local res = fmt.resource("communication", h)
    :prop(app.put_guid, "please pass this in a PUT request")
    :prop("supportedModalities", app.available and { "Messaging" } or {})
    :prop("supportedMessageFormats", { "Plain", "Html" })
    :prop("etag", tostring(app.etag))
    :link("conversations", h .. "/conversations?filter=active")
  if has_scope(app.scopes, "Conversations.Initiate") then
    res:link("startOnlineMeeting", h .. "/onlineMeetingInvitations?onlineMeetingUri=adhoc")
      :link("joinOnlineMeeting", h .. "/onlineMeetingInvitations")
  end
  return res
end

local function uuid()
  local r = host.random(16)
  return r:sub(1, 8) .. "-" .. r:sub(9, 12) .. "-" .. r:sub(13, 16) .. "-" .. r:sub(17, 20) .. "-" .. r:sub(21, 32)
end
S.uuid = uuid

local function field(input, name)
  local v = input[name]
  if v == nil then
    local lname = name:lower()
    for k, x in pairs(input) do
      if type(k) == "string" and k:lower() == lname then
        v = x
        break
      end
    end
  end
  return v
end
S.field = field

-- Reads the request body as UCWA input: table, or nil and an error answer.
function S.input(ctx, optional)
  local req = ctx.req
  if req.too_large then
    return nil, { S.err(ctx, 413, "EntityTooLarge", nil, "The request is too large.") }
  end
  if req.body == "" then
    if optional then return {} end
    return nil, { S.err(ctx, 400, "BadRequest", nil, "A request body is required.") }
  end
  local ct = (req.headers["content-type"] or ""):lower()
  if ct ~= "" and not ct:find("json", 1, true) and not ct:find("xml", 1, true) then
    return nil, { S.err(ctx, 415, "UnsupportedMediaType", nil, "The content-type is not supported.") }
  end
  if ct == "" then
    ct = req.body:match("^%s*<") and "application/xml" or "application/json"
  end
  local input, msg = fmt.parse_input(req.body, ct)
  if not input then
    return nil, { S.err(ctx, 400, "BadRequest", nil, "The request body could not be read: " .. msg) }
  end
  return input
end

-- Takes the pending P-GET off `app` and stops its timers, so that only the
-- caller answers it.  Returns it, or nil if there is none.
local function take_pget(app)
  local p = app.pget
  if not p then return nil end
  app.pget = nil
  S.cancel(p.timer)
  S.cancel(app.release_timer)
  app.release_timer = nil
  return p
end

-- The reply context of a held P-GET: the format it asked for.
local function pget_ctx(p)
  return { fmt = p.fmt, ctype = p.ctype }
end

local function pget_release(app, status, headers, body) -- forward declaration target
  local p = take_pget(app)
  if p then host.respond(p.box, status, headers, body) end
end

local function app_touch(app)
  app.last_active = host.now()
end
S.app_touch = app_touch

-- Removes an application; its pending P-GET gets 404 ApplicationNotFound.
function S.app_delete(app, why)
  if app.deleted then return end
  app.deleted = true
  S.cancel(app.idle_timer)
  S.cancel(app.release_timer)
  S.meet.app_gone(app)
  if app.pget then
    pget_release(app, S.err(pget_ctx(app.pget), 404, "NotFound", "ApplicationNotFound",
      why or "The application does not exist."))
  end
  S.apps[app.id] = nil
  local user_apps = S.user_apps[app.user.username]
  if user_apps then
    user_apps[app] = nil
  end
  S.app_total = S.app_total - 1
end

local function schedule_idle(app)
  S.cancel(app.idle_timer)
  local idle = S.cfg["app-idle"]
  app.idle_timer = S.after(math.max(app.last_active + idle - host.now(), 0.01), function()
    if app.deleted then return end
    if app.pget or host.now() - app.last_active < idle then
      app.last_active = app.pget and host.now() or app.last_active
      schedule_idle(app)
      return
    end
    S.app_delete(app, "An inactive application expired.")
  end)
end

S.user_apps = {}
S.app_total = 0

local function create_app(ctx, tok, anonymous_path)
  if tok.anonymous ~= anonymous_path then
    return S.err(ctx, 403, "Forbidden", nil, anonymous_path
      and "This resource is for anonymous meeting tokens."
      or "Anonymous tokens must use the anonymous applications resource.")
  end
  local input, e = S.input(ctx)
  if not input then return table.unpack(e) end
  local ua, culture, epid = field(input, "userAgent"), field(input, "culture"), field(input, "endpointId")
  if type(ua) ~= "string" or ua == "" or #ua > 100
      or (culture ~= nil and (type(culture) ~= "string" or #culture > 100)) then
    return S.err(ctx, 400, "BadRequest", "ParameterValidationFailure",
      "userAgent is required (at most 100 characters).")
  end
  if anonymous_path and (type(culture) ~= "string" or culture == "") then
    return S.err(ctx, 400, "BadRequest", "ParameterValidationFailure", "culture is required.")
  end
  if not anonymous_path and (type(epid) ~= "string" or epid == "") then
    return S.err(ctx, 400, "BadRequest", "ParameterValidationFailure", "endpointId is required.")
  end
  local user = tok.identity
  local mine = S.user_apps[user.username]
  if not mine then
    mine = {}
    S.user_apps[user.username] = mine
  end
  -- The same endpoint signing in again gets its application back.
  if epid then
    for app in pairs(mine) do
      if app.endpointId == epid and not app.deleted then
        app_touch(app)
        app.token = tok
        return S.send(ctx, 201, app_resource(app), { Location = app.href, ETag = tostring(app.etag) })
      end
    end
  end
  local count = 0
  for _ in pairs(mine) do count = count + 1 end
  local limit = user.max_apps or 10000
  if count >= limit then
    return S.err(ctx, 410, "Gone", "TooManyApplications", "There are too many applications for this user.")
  end
  app_seq = app_seq + 1
  local id = tostring(app_seq)
  local app = {
    id = id,
    href = (anonymous_path and ANON_APPS_PATH or APPS_PATH) .. "/" .. id,
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
    next_ack = 1,
    batch = nil,
    queue = {},
    qhead = 1,
    pget = nil,
    params = { timeout = S.cfg["pget-timeout"], low = 15, medium = 5 },
    invs = {},
    inv_seq = 0,
    convs = {},
    conv_seq = 0,
    last_active = host.now(),
    last_pget = host.now(),
    synthetic_seq = 0,
    created = host.wallclock(),
  }
  S.apps[id] = app
  S.app_order[#S.app_order + 1] = id
  mine[app] = true
  S.app_total = S.app_total + 1
  schedule_idle(app)
  return S.send(ctx, 201, app_resource(app), { Location = app.href, ETag = tostring(app.etag) })
end

---------------------------------------------------------------------------
-- The event channel (EventsInUCWA.md, EventChannelDetails.md, events_ref.md)

local PRIORITY_DELAY = { realtime = 0, high = 0 }

local function queued(app)
  return #app.queue - app.qhead + 1
end
S.queued = queued

local function release_deadline(app)
  local best
  local p = app.params
  -- Only the oldest event of each kind matters: scan until a high one.
  for i = app.qhead, #app.queue do
    local q = app.queue[i]
    local d = PRIORITY_DELAY[q.prio]
    if d == nil then
      d = (q.prio == "medium") and p.medium or p.low
    end
    local at = q.t + d
    if not best or at < best then best = at end
    if d == 0 then break end
  end
  return best
end

local function events_href(app, n)
  return app.href .. "/events?ack=" .. n
end

local function build_batch(app)
  local senders = {}
  local last
  local n = 0
  while app.qhead <= #app.queue and n < MAX_BATCH do
    local q = app.queue[app.qhead]
    app.queue[app.qhead] = nil
    app.qhead = app.qhead + 1
    n = n + 1
    if not last or last.rel ~= q.sender_rel or last.href ~= q.sender_href then
      last = { rel = q.sender_rel, href = q.sender_href, events = {} }
      senders[#senders + 1] = last
    end
    last.events[#last.events + 1] = q.ev
  end
  if app.qhead > #app.queue then
    app.queue, app.qhead = {}, 1
  end
  local rel = "next"
  if app.resume_flag then
    rel = "resume"
    app.resume_flag = false
  end
  local batch = { n = app.next_ack, self = events_href(app, app.next_ack), senders = senders,
    links = { { rel = rel, href = events_href(app, app.next_ack + 1) } }, count = n }
  app.batch = batch
  S.stats.batches = S.stats.batches + 1
  return batch
end

local function batch_reply(ctx, batch)
  return reply_as(ctx, 200, nil, "events", batch)
end

local function resync_reply(ctx, app, self_ack)
  local batch = { self = events_href(app, self_ack or app.next_ack),
    links = { { rel = "resync", href = events_href(app, app.next_ack) } } }
  return batch_reply(ctx, batch)
end

-- Answers the pending P-GET with `batch`, or drops it (fault injection).
local function deliver(app, batch)
  local p = take_pget(app)
  if not p then return end
  app.last_pget = host.now()
  if S.faults.drop_pget > 0 then
    S.faults.drop_pget = S.faults.drop_pget - 1
    host.drop(p.box)
    return
  end
  host.respond(p.box, batch_reply(pget_ctx(p), batch))
end

local function schedule_release(app)
  if not app.pget then return end
  local at = release_deadline(app)
  if not at then return end
  if app.release_timer and not app.release_timer.dead and app.release_timer.at <= at then
    return
  end
  S.cancel(app.release_timer)
  app.release_timer = S.after(at - host.now(), function()
    app.release_timer = nil
    if app.pget and not app.deleted and queued(app) > 0 and not app.batch then
      deliver(app, build_batch(app))
    end
  end)
end

-- Queues an event for an application.
--   prio: "realtime" | "high" | "medium" | "low"
function S.emit(app, prio, sender_rel, sender_href, ev)
  if app.deleted then return end
  app.queue[#app.queue + 1] = { prio = prio, sender_rel = sender_rel, sender_href = sender_href, ev = ev,
    t = host.now() }
  S.stats.events = S.stats.events + 1
  if app.pget and not app.batch then
    schedule_release(app)
  end
end

-- Marks the application for "resume": transient state is reset and the next
-- event response carries a resume link.
function S.reset_transient(app)
  S.meet.app_gone(app)
  app.queue, app.qhead = {}, 1
  app.batch = nil
  app.resume_flag = true
  if app.pget then
    deliver(app, build_batch(app))
  end
end

function S.force_resync(app)
  local p = take_pget(app)
  if p then
    host.respond(p.box, resync_reply(pget_ctx(p), app, p.ack))
  else
    app.force_resync = true
  end
end

local function numparam(q, name, lo, hi)
  local v = q[name]
  if v == nil or v == "" then return nil end
  local n = tonumber(v)
  if not n or n ~= n then return false end
  if n < lo then n = lo end
  if n > hi then n = hi end
  return n
end

local function events_get(ctx, app)
  local req = ctx.req
  local q = req.query
  local cfg = S.cfg
  local timeout = numparam(q, "timeout", cfg["min-timeout"], 1800)
  local low = numparam(q, "low", cfg["min-aggregation"], 1800)
  local medium = numparam(q, "medium", cfg["min-aggregation"], 1800)
  local priority = numparam(q, "priority", -2 ^ 31, 2 ^ 31)
  if timeout == false or low == false or medium == false or priority == false then
    return S.err(ctx, 400, "BadRequest", "ParameterValidationFailure",
      "timeout, low, medium and priority must be numbers.")
  end
  if timeout then app.params.timeout = timeout end
  if low then app.params.low = low end
  if medium then app.params.medium = medium end
  priority = priority or 0
  local ack = tonumber(q.ack)

  -- A newer P-GET replaces the pending one (unless its priority is lower).
  local had_pending = app.pget ~= nil
  if app.pget then
    -- the losing P-GET, the new one or the pending one, gets the 409
    local replaced = "The existing P-GET was replaced with a new P-GET from the client application."
    if priority < app.pget.priority then
      return S.err(ctx, 409, "Conflict", "PGetReplaced", replaced)
    end
    local old = take_pget(app)
    host.respond(old.box, S.err(pget_ctx(old), 409, "Conflict", "PGetReplaced", replaced))
  end

  local now = host.now()
  if not had_pending and now - app.last_pget > cfg["resume-after"] and not app.resume_flag then
    -- The client was away: conversations are gone, the next response says resume.
    S.reset_transient(app)
  end
  app.last_pget = now

  if ack and app.batch and ack == app.next_ack + 1 then
    -- The client acknowledges the batch it holds.
    app.batch = nil
    app.next_ack = app.next_ack + 1
  end
  if app.force_resync then
    app.force_resync = false
    return resync_reply(ctx, app, ack)
  end
  if app.resume_flag then
    -- Whatever ack the client had, the state was reset: answer with resume.
    app.batch = nil
    ack = app.next_ack
  end
  if ack ~= app.next_ack then
    return resync_reply(ctx, app, ack)
  end

  local function answer(batch)
    if S.faults.drop_pget > 0 then
      S.faults.drop_pget = S.faults.drop_pget - 1
      return "drop"
    end
    return batch_reply(ctx, batch)
  end
  if app.batch then
    return answer(app.batch) -- the same batch again: it was never acknowledged
  end
  local at = release_deadline(app)
  if app.resume_flag or (at and at <= now) then
    return answer(build_batch(app))
  end
  -- Wait: suspended in C, no CPU until an event or the timeout.
  local p = { box = req.box, fmt = ctx.fmt, ctype = ctx.ctype, priority = priority, ack = ack, since = now }
  app.pget = p
  p.timer = S.after(app.params.timeout, function()
    if app.pget == p then
      deliver(app, build_batch(app))
    end
  end)
  schedule_release(app)
  return "suspend"
end

---------------------------------------------------------------------------
-- Application routes

local function method_not_allowed(ctx, allow)
  return S.err(ctx, 405, "MethodNotAllowed", nil, "The requested HTTP method is not supported for this resource.",
    { Allow = allow })
end
S.method_not_allowed = method_not_allowed

local function not_found(ctx)
  return S.err(ctx, 404, "NotFound", "ResourceNotFound", "The resource does not exist.")
end
S.not_found = not_found

local function app_route(ctx, app, rest)
  local m = ctx.req.method
  if rest == "" then
    if m == "GET" then
      return S.send(ctx, 200, app_resource(app), { ETag = tostring(app.etag) })
    elseif m == "DELETE" then
      S.app_delete(app, "The application was deleted.")
      return S.no_content(ctx)
    end
    return method_not_allowed(ctx, "GET, DELETE")
  elseif rest == "/events" then
    if m ~= "GET" then return method_not_allowed(ctx, "GET") end
    return events_get(ctx, app)
  elseif rest == "/me" then
    if m ~= "GET" then return method_not_allowed(ctx, "GET") end
    return S.send(ctx, 200, S.me_resource(app))
  elseif rest == "/me/makeMeAvailable" then
    if m ~= "POST" then return method_not_allowed(ctx, "POST") end
    if app.anonymous then
      return S.err(ctx, 403, "Forbidden", "AnonymousNotAllowed", "This operation is not allowed for anonymous users.")
    end
    if not has_scope(app.scopes, "Conversations.Receive") then
      return S.err(ctx, 403, "Forbidden", nil, "The token lacks the Conversations.Receive scope.")
    end
    local input, e = S.input(ctx, true)
    if not input then return table.unpack(e) end
    if app.available then
      return S.err(ctx, 409, "Conflict", "AlreadyExists", "The application is already available.")
    end
    app.available = true
    app.etag = app.etag + 1
    app.last_activity_report = host.now()
    S.emit(app, "medium", "me", app.href .. "/me",
      { type = "updated", link = { rel = "me", href = app.href .. "/me" }, resource = S.me_resource(app) })
    S.emit(app, "medium", "me", app.href .. "/me",
      { type = "added", link = { rel = "presence", href = app.href .. "/me/presence" } })
    S.emit(app, "medium", "communication", app.href .. "/communication",
      { type = "updated", link = { rel = "communication", href = app.href .. "/communication" },
        resource = S.communication_resource(app) })
    return S.no_content(ctx)
  elseif rest == "/me/reportMyActivity" then
    if m ~= "POST" then return method_not_allowed(ctx, "POST") end
    if not app.available then
      return S.err(ctx, 409, "Conflict", "MakeMeAvailableRequired", "makeMeAvailable is required first.")
    end
    app.last_activity_report = host.now()
    return S.no_content(ctx)
  elseif rest == "/me/presence" and app.available then
    if m ~= "GET" then return method_not_allowed(ctx, "GET") end
    return S.send(ctx, 200, fmt.resource("presence", app.href .. "/me/presence"):prop("availability", "Online"))
  elseif rest == "/reportMyNetwork" then
    if m ~= "POST" then return method_not_allowed(ctx, "POST") end
    return S.no_content(ctx)
  elseif rest == "/people" then
    if m ~= "GET" then return method_not_allowed(ctx, "GET") end
    return S.send(ctx, 200, S.people_resource(app))
  elseif rest == "/communication" then
    if m ~= "GET" then return method_not_allowed(ctx, "GET") end
    return S.send(ctx, 200, S.communication_resource(app), { ETag = tostring(app.etag) })
  elseif rest:sub(1, 15) == "/communication/" then
    return S.meet.route(ctx, app, rest:sub(15))
  end
  return not_found(ctx)
end

---------------------------------------------------------------------------
-- Entry points

local function root_resource(ctx)
  local b = S.base
  return S.send(ctx, 200, fmt.resource("root", b .. AUTODISCOVER)
    :link("user", b .. USER_PATH)
    :link("xframe", b .. XFRAME_PATH))
end

local function user_resource(ctx, tok)
  local b = S.base
  return S.send(ctx, 200, fmt.resource("user", b .. USER_PATH)
    :link("applications", b .. (tok.anonymous and ANON_APPS_PATH or APPS_PATH))
    :link("xframe", b .. XFRAME_PATH))
end

local function faulted(ctx)
  local req = ctx.req
  local f = S.faults.fail
  if f and f.count > 0 and (not f.match or req.path:find(f.match, 1, true)) then
    f.count = f.count - 1
    if f.count <= 0 then S.faults.fail = nil end
    return { S.err(ctx, f.status, f.code, f.subcode, "Injected failure.",
      f.retry_after and { ["Retry-After"] = tostring(f.retry_after) } or nil) }
  end
  return nil
end

local function route(ctx)
  local req = ctx.req
  local path, m = req.path, req.method
  local lpath = path:lower()

  if lpath == AUTODISCOVER or lpath == AUTODISCOVER .. "/" or path == "/" then
    if m ~= "GET" then return method_not_allowed(ctx, "GET") end
    return root_resource(ctx)
  elseif lpath == USER_PATH:lower() then
    if m ~= "GET" then return method_not_allowed(ctx, "GET") end
    local tok, e = authenticate(req)
    if not tok then return table.unpack(e) end
    return user_resource(ctx, tok)
  elseif lpath == XFRAME_PATH then
    return 200, { ["Content-Type"] = "text/html; charset=utf-8" },
      "<!DOCTYPE html><html><head><title>XFrame</title></head><body></body></html>"
  elseif path == TOKEN_PATH then
    return token_endpoint(req)
  end

  local kind, id, rest = path:match("^/ucwa/(%a+)/v1/applications/([^/]+)(.*)$")
  local collection = (path == APPS_PATH or path == ANON_APPS_PATH)
  if not collection and not (id and (kind == "oauth" or kind == "anonymous")) then
    return not_found(ctx)
  end
  local tok, e = authenticate(req)
  if not tok then return table.unpack(e) end
  if collection then
    if m ~= "POST" then return method_not_allowed(ctx, "POST") end
    return create_app(ctx, tok, path == ANON_APPS_PATH)
  end
  local app = S.apps[id]
  if not app or app.href ~= "/ucwa/" .. kind .. "/v1/applications/" .. id then
    return S.err(ctx, 404, "NotFound", "ApplicationNotFound", "The application resource does not exist.")
  end
  if app.user.username ~= tok.identity.username then
    return S.err(ctx, 403, "Forbidden", nil, "The application belongs to another user.")
  end
  app.token = tok
  app_touch(app)
  return app_route(ctx, app, rest)
end

local function finish(ctx, status, headers, body)
  local d = S.faults.delay
  if d and d.count > 0 and status ~= "suspend" and status ~= "drop"
      and (not d.match or ctx.req.path:find(d.match, 1, true)) then
    d.count = d.count - 1
    if d.count <= 0 then S.faults.delay = nil end
    local box = ctx.req.box
    S.after(d.seconds, function()
      host.respond(box, status, headers, body)
    end)
    return "suspend"
  end
  return status, headers, body
end

function M.handle(req)
  S.stats.requests = S.stats.requests + 1
  local ctx = { req = req }
  ctx.fmt, ctx.ctype = fmt.negotiate(req.headers.accept)
  host.log(req.method .. " " .. req.path)
  if req.path:sub(1, 6) == "/_sim/" or req.path == "/_sim" then
    if S.cfg["no-control"] then
      return S.not_found(ctx)
    end
    return S.control.handle(ctx)
  end
  local ok, a, b, c = xpcall(function()
    local f = faulted(ctx)
    if f then return table.unpack(f) end
    return route(ctx)
  end, debug.traceback)
  if not ok then
    io.stderr:write("ucwa-sim: ", tostring(a), "\n")
    return S.err(ctx, 500, "ServiceFailure", nil, "Internal Server Error.")
  end
  return finish(ctx, a, b, c)
end

function M.init(opts, base)
  S.base = base
  local cfg = {}
  for k, v in pairs(defaults) do
    cfg[k] = v
  end
  for k, v in pairs(opts) do
    if defaults[k] ~= nil then
      local n = tonumber(v)
      if not n or n < 0 then
        error("bad value for --" .. k .. ": " .. tostring(v), 0)
      end
      cfg[k] = n
    else
      cfg[k] = v
    end
  end
  S.cfg = cfg
  math.randomseed(os.time(), math.floor(host.now() * 1000))
  load_directory(cfg.directory)
  -- Tokens expired for a day are forgotten (renewing them fails after that).
  local function prune()
    local limit = host.now() - 86400
    for tok, rec in pairs(S.tokens) do
      if rec.expires < limit then S.tokens[tok] = nil end
    end
    S.after(600, prune)
  end
  S.after(600, prune)
  S.meet = require("sim_meet")(S)
  S.control = require("sim_control")(S)
end

return M
