-- ucwa-sim: the console (/_sim/console), the browser page that plays the
-- other people in a meeting, and its stream of changes.
--
-- The sim modules tell this one what changed, one call each where it
-- happens: changed("meeting", m), changed("app", app), changed("invitation",
-- inv), changed("person", username) for presence, changed("faults"),
-- said(meeting, member, text, html) for a message,
-- channel(app, what, x) for the event channel (P-GET held, batch sent, ack,
-- resync, dropped ...).  Changes are gathered and written out on the next
-- tick, one entry per meeting or application however often it changed.
-- A one-to-one IM session (messaging.lua: a meeting with p2p set) is an
-- "im" entry, its messages marked `im`; people and IMs are viewed by
-- console_people.lua.
--
-- The stream is long polling on the control API's listeners:
-- GET /_sim/console/events?after=N answers the entries after N at once, or
-- is held (a suspended request, as P-GETs are) until there are some or
-- `wait` seconds (25 by default) pass.  Bounds: MAX_STREAMS polls held at
-- once (more get 503), the log keeps MAX_LOG entries and MAX_LOG_BYTES (a
-- poll from before that gets {reset: true} and reads the state again), one
-- answer carries at most MAX_ANSWER_BYTES.  With no console watching (no
-- poll for WATCH_GRACE seconds) changes are not written at all: only the
-- last MAX_MESSAGES messages and the channels' counts are kept, for the
-- state a console reads first (GET /_sim/console/state).
--
-- The page, its script and style are sim/console/*, built into the binary
-- (sim/embed.lua makes them the module sim_assets); with --script-dir they
-- are read from the folder beside it (../console), so they can be edited live.
local host = require "ucwasim.host"
local fmt = require "formats"
local timers = require "timers"

local M = {}

M.MAX_STREAMS = 8
M.MAX_LOG = 1000
M.MAX_LOG_BYTES = 1024 * 1024
M.MAX_ANSWER_BYTES = 256 * 1024
local MAX_MESSAGES = 500
local MAX_TEXT = 4000
local MAX_CHANNEL_LINES = 12
local MAX_INVITATIONS = 10
local WAIT = 25
local WATCH_GRACE = 60

local views = {}  -- from control.lua: state(), meeting(m), app(app), faults()

local seq, base = 0, 0 -- last entry written; polls from `base` on are served from the log
-- { seq=, json= } from log_head to log_tail (indices: never `#` over holes)
local log, log_head, log_tail, log_bytes = {}, 1, 0, 0
local polls = {}          -- box -> { after=, timer= }
local npolls = 0
local last_poll = -math.huge -- when the last poll ended
local function nothing_dirty() return { meeting = {}, app = {}, invitation = {}, person = {} } end
local dirty = nothing_dirty()
local faults_dirty = false
local pending_messages = {}
local flush_timer

local messages, msg_seq = {}, 0 -- the last MAX_MESSAGES, oldest first
local channels = setmetatable({}, { __mode = "k" }) -- app -> { counts, lines }
local invs_of = setmetatable({}, { __mode = "k" })  -- app -> its invitations, newest last

local function watching()
  return npolls > 0 or host.now() - last_poll < WATCH_GRACE
end

---------------------------------------------------------------------------
-- the log

local function trim_log()
  while log_head <= log_tail and (log_tail - log_head + 1 > M.MAX_LOG or log_bytes > M.MAX_LOG_BYTES) do
    local e = log[log_head]
    log[log_head] = nil
    log_head = log_head + 1
    log_bytes = log_bytes - #e.json
    base = e.seq
  end
end

local function append(entry)
  seq = seq + 1
  entry.seq = seq
  local json = fmt.json(entry)
  log_tail = log_tail + 1
  log[log_tail] = { seq = seq, json = json }
  log_bytes = log_bytes + #json
  trim_log()
end

-- A change nobody watches: not written; a poll from before it reads the
-- state again.
local function unwatched()
  seq = seq + 1
  base = seq
  if log_tail >= log_head then log, log_head, log_tail, log_bytes = {}, 1, 0, 0 end
end

-- The answer to a poll from `after`: the entries after it (at most
-- MAX_ANSWER_BYTES), or a reset; nil when there is nothing yet.
local function answer_from(after)
  if after < base or after > seq then
    return fmt.json({ seq = seq, reset = true })
  end
  if after == seq then return nil end
  local parts, bytes, last = {}, 0, after
  for i = log_head, log_tail do
    local e = log[i]
    if e.seq > after then
      if bytes + #e.json > M.MAX_ANSWER_BYTES and #parts > 0 then break end
      parts[#parts + 1] = e.json
      bytes = bytes + #e.json
      last = e.seq
    end
  end
  return '{"seq":' .. last .. ',"changes":[' .. table.concat(parts, ",") .. "]}"
end

local function json_answer(status, body, extra)
  local h = { ["Content-Type"] = "application/json; charset=utf-8", ["Cache-Control"] = "no-store" }
  for k, v in pairs(extra or {}) do h[k] = v end
  return status, h, body
end

local function end_poll(box)
  local p = polls[box]
  if not p then return nil end
  polls[box] = nil
  npolls = npolls - 1
  timers.cancel(p.timer)
  last_poll = host.now()
  return p
end

-- Answers every held poll that has something new.
local function wake_polls()
  for box, p in pairs(polls) do
    local body = answer_from(p.after)
    if body then
      end_poll(box)
      host.respond(box, json_answer(200, body))
    end
  end
end

---------------------------------------------------------------------------
-- what changed

local function channel_of(app)
  local c = channels[app]
  if not c then
    c = { counts = { held = 0, sent = 0, events = 0, acks = 0, resyncs = 0, resumes = 0, dropped = 0,
      replaced = 0, left = 0 }, lines = {} }
    channels[app] = c
  end
  return c
end

local function invitation_view(inv)
  local conv = inv.conv
  return { n = inv.n, direction = inv.direction, state = inv.state, meeting = conv.meeting.id,
    conversation = conv.state, from = inv.from and inv.from.name or nil }
end

local function app_entry(app)
  local v = app.deleted and { id = app.id, user = app.user.username, gone = true } or views.app(app)
  local c = channel_of(app)
  v.channel = { counts = c.counts, lines = fmt.array(c.lines) }
  local invs = fmt.array()
  for i, inv in ipairs(invs_of[app] or {}) do invs[i] = invitation_view(inv) end
  v.invitations = invs
  return v
end

local function flush()
  flush_timer = nil
  if not watching() then
    dirty = nothing_dirty()
    faults_dirty, pending_messages = false, {}
    return unwatched()
  end
  local people = require "console_people" -- (it requires messaging.lua, which requires this module)
  for m in pairs(dirty.meeting) do
    if m.p2p then
      append({ kind = "im", im = people.im(m, views.meeting) })
    else
      append({ kind = "meeting", meeting = views.meeting(m) })
    end
  end
  for username in pairs(dirty.person) do append({ kind = "person", person = people.person(username) }) end
  for inv in pairs(dirty.invitation) do dirty.app[inv.conv.app] = true end
  for app in pairs(dirty.app) do append({ kind = "app", app = app_entry(app) }) end
  if faults_dirty then append({ kind = "faults", faults = views.faults() }) end
  for _, msg in ipairs(pending_messages) do append({ kind = "message", message = msg }) end
  dirty = nothing_dirty()
  faults_dirty, pending_messages = false, {}
  wake_polls()
end

local function schedule()
  if not flush_timer then flush_timer = timers.after(0, flush) end
end

local function remember_invitation(inv)
  local app = inv.conv.app
  local list = invs_of[app]
  if not list then
    list = {}
    invs_of[app] = list
  end
  for _, x in ipairs(list) do
    if x == inv then return end
  end
  list[#list + 1] = inv
  if #list > MAX_INVITATIONS then table.remove(list, 1) end
end

-- Something the console shows changed: kind "meeting" (obj: the meeting),
-- "app" (the application), "invitation" (an onlineMeetingInvitation
-- operation, invitations.lua), "person" (obj: a user name) or "faults".
function M.changed(kind, obj)
  if kind == "invitation" then remember_invitation(obj) end
  if not watching() then return unwatched() end
  if kind == "faults" then faults_dirty = true else dirty[kind][obj] = true end
  schedule()
end

-- `member` said `text` (html: its HTML form, or nil) in `meeting`.
function M.said(meeting, member, text, html)
  msg_seq = msg_seq + 1
  local msg = { n = msg_seq, meeting = meeting.id, from = member.key, name = member.name,
    bot = member.conv ~= nil, im = meeting.p2p or nil, text = text:sub(1, MAX_TEXT),
    html = html and html:sub(1, MAX_TEXT) or nil, time = host.wall_seconds() }
  messages[#messages + 1] = msg
  if #messages > MAX_MESSAGES then table.remove(messages, 1) end
  if not watching() then return unwatched() end
  pending_messages[#pending_messages + 1] = msg
  schedule()
end

local LINES = {
  held = "P-GET held (ack %s)", sent = "batch %s sent", again = "batch %s sent again",
  ack = "batch %s acknowledged", resync = "resync to batch %s", resume = "resume: conversations reset",
  dropped = "batch %s dropped (fault): no answer", replaced = "P-GET replaced (409)",
  left = "client left while its P-GET was held",
}

-- The application's event channel did something: `what` is one of the
-- LINES above (again counts as sent); `ack` the batch or P-GET's number,
-- `batch` the batch sent (events.lua's: { senders = { {events=} ... } }).
function M.channel(app, what, ack, batch)
  local events
  if batch then
    events = 0
    for _, s in ipairs(batch.senders or {}) do events = events + #s.events end
  end
  local c = channel_of(app)
  local key = what == "again" and "sent" or what == "ack" and "acks" or what == "resync" and "resyncs"
    or what == "resume" and "resumes" or what
  c.counts[key] = (c.counts[key] or 0) + 1
  if events then c.counts.events = c.counts.events + events end
  if not watching() then return unwatched() end
  local line = LINES[what]:format(tostring(ack or "?"))
  if events then line = line .. (" (%d event%s)"):format(events, events == 1 and "" or "s") end
  c.lines[#c.lines + 1] = { time = host.wall_seconds(), what = what, text = line }
  if #c.lines > MAX_CHANNEL_LINES then table.remove(c.lines, 1) end
  dirty.app[app] = true
  schedule()
end

---------------------------------------------------------------------------
-- the routes

local TYPES = { html = "text/html; charset=utf-8", js = "text/javascript; charset=utf-8",
  css = "text/css; charset=utf-8" }
local FILES = { [""] = "index.html", ["/"] = "index.html", ["/console.js"] = "console.js",
  ["/console.css"] = "console.css" }

-- Nothing but this listener's own files: no other origin, no inline code.
local CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
  .. "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

local assets
local function asset(name)
  if assets == nil then
    local ok, built = pcall(require, "sim_assets")
    assets = ok and built or false
  end
  if assets then return assets["console/" .. name] end
  -- --script-dir DIR: the files in DIR/../console
  local dir = package.path:match("^([^;]*)/%?%.lua")
  if not dir then return nil end
  local f = io.open(dir .. "/../console/" .. name, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

local function file(name)
  local text = asset(name)
  if not text then
    return json_answer(404, fmt.json({ error = "the console's " .. name .. " is not built in" }))
  end
  return 200, { ["Content-Type"] = TYPES[name:match("%.(%a+)$")], ["Cache-Control"] = "no-cache",
    ["X-Content-Type-Options"] = "nosniff", ["Content-Security-Policy"] = CSP,
    ["Referrer-Policy"] = "no-referrer" }, text
end

local function state()
  local s = views.state()
  s.seq = seq
  local people = require "console_people"
  s.ims, s.people = people.ims(views.meeting), people.people()
  s.messages = fmt.array({ table.unpack(messages) })
  local apps = fmt.array()
  for i, app in ipairs(s.apps) do apps[i] = app_entry(app) end
  s.apps = apps
  s.limits = { streams = M.MAX_STREAMS, log = M.MAX_LOG, log_bytes = M.MAX_LOG_BYTES,
    answer_bytes = M.MAX_ANSWER_BYTES }
  return s
end

local function events(ctx)
  local q = ctx.req.query
  local after = tonumber(q.after or "")
  local wait = tonumber(q.wait or WAIT)
  if not after or after ~= math.floor(after) or not wait or wait ~= wait then
    return json_answer(400, fmt.json({ error = "after must be a whole number (the seq of the last answer)" }))
  end
  last_poll = host.now()
  local body = answer_from(after)
  if body then return json_answer(200, body) end
  if npolls >= M.MAX_STREAMS then
    return json_answer(503, fmt.json({ error = ("too many console streams: %d are open"):format(npolls) }),
      { ["Retry-After"] = "5" })
  end
  local box = ctx.req.box
  local p = { after = after }
  p.timer = timers.after(math.min(math.max(wait, 0), WAIT), function()
    if end_poll(box) then host.respond(box, json_answer(200, fmt.json({ seq = seq, changes = fmt.array() }))) end
  end)
  polls[box] = p
  npolls = npolls + 1
  return "suspend"
end

-- GET /_sim/console[/console.js|/console.css|/state|/events?after=N&wait=S]
function M.handle(ctx)
  local rest = ctx.req.path:sub(#"/_sim/console" + 1)
  if ctx.req.method ~= "GET" then
    return json_answer(405, fmt.json({ error = "GET only" }), { Allow = "GET" })
  end
  if FILES[rest] then return file(FILES[rest]) end
  if rest == "/state" then
    last_poll = host.now() -- a console reads the state, then polls: watch from now on
    return json_answer(200, fmt.json(state()))
  end
  if rest == "/events" then return events(ctx) end
  return json_answer(404, fmt.json({ error = "unknown console path " .. ctx.req.path }))
end

-- The client of a held poll went away.
function M.gone(box)
  end_poll(box)
end

-- How many polls are held (the state dump).
function M.streams()
  return npolls
end

-- control.lua's views: state() -> { meetings, apps (the applications),
-- faults, users, listen }, meeting(m), app(app), faults().
function M.start(v)
  views = v
end

return M
