-- ucwa-sim: one-to-one instant messages (startMessaging_ref.md,
-- messagingInvitation_ref.md, addMessaging_ref.md, stopMessaging_ref.md,
-- ReceiveAnIM.md, SendAnIM.md).
--
-- Two users talk in a session: a peer-to-peer "meeting" (the shape
-- meetings.lua gives, with p2p = true, kept here and not in the meetings'
-- registry), so that each side's conversation, participants, messages and
-- typing are conversations.lua's and participants.lua's as in a meeting.
-- The invitation that opens a session is a messagingInvitation,
-- invitations.lua's operation with its own accept, decline and cancel.
--
-- A user who is not signed in (no available application) is played by the
-- simulator: invited, it accepts after --step-delay; what is said to it is
-- kept in the session's transcript; the control API makes it speak
-- (M.control: /_sim/users/<user>/message, /invite, /messages).
--
-- stopMessaging ends the session for both sides: their messaging goes
-- Disconnected, each conversation stays and offers addMessaging, which
-- rings the other side again in a new session.
local host = require "ucwasim.host"
local config = require "config"
local console = require "console"
local conversations = require "conversations"
local directory = require "directory"
local fmt = require "formats"
local invitations = require "invitations"
local meetings = require "meetings"
local participants = require "participants"
local reply = require "reply"
local timers = require "timers"

local M = {}

local REASONS = conversations.REASONS

-- Why an outgoing messagingInvitation fails, as its sender hears it.
M.REASONS = {
  declined = { code = "RemoteFailure", subcode = "Declined", message = "The invitation was declined." },
  unknown = { code = "NotFound", subcode = "DestinationNotFound", message = "The person could not be found." },
  noanswer = { code = "Timeout", subcode = "Timeout", message = "The invitation was not answered." },
  canceled = { code = "RemoteFailure", subcode = "Canceled", message = "The sender cancelled the invitation." },
}

-- Bounds: the first message (a data: URL), the transcript of a session,
-- and the sessions kept (the oldest ended ones go first).
M.MAX_MESSAGE, M.MAX_TRANSCRIPT, M.MAX_SESSIONS = 64 * 1024, 1000, 1000

local sessions, order, session_seq = {}, {}, 0 -- id -> session (the control API reads them); ids, oldest first

-- The applications of `username` that can take an incoming invitation
-- (applications.lua requires this module: required when needed).
local function available_for(username)
  return require("applications").available_for(username)
end

local function data_url(text)
  return "data:text/plain;charset=utf-8," .. fmt.urlencode(text)
end

---------------------------------------------------------------------------
-- sessions

-- Forgets the oldest ended sessions beyond M.MAX_SESSIONS.
local function prune()
  if #order <= M.MAX_SESSIONS then return end
  local keep = {}
  for _, id in ipairs(order) do
    local s = sessions[id]
    if s.ended and #order - #keep > M.MAX_SESSIONS then
      sessions[id] = nil
    else
      keep[#keep + 1] = id
    end
  end
  order = keep
end

-- A new session between two users: `a` (who starts it) and `b`.
local function new_session(a, b, opts)
  prune()
  session_seq = session_seq + 1
  local id = "IM" .. session_seq
  local s = {
    id = id, p2p = true, uri = "sip:" .. a .. ";gruu;opaque=im:" .. id, organizer = a,
    subject = opts.subject or "", thread = opts.threadId or host.random(16),
    lobby = false, anonymous = false, ended = false, leaders = {}, members = {}, order = {},
    users = { a, b }, convs = {}, transcript = {}, rings = {},
  }
  order[#order + 1] = id
  s.on_message = function(from, text, html)
    local t = s.transcript
    t[#t + 1] = { from = from.key, text = text, html = html }
    if #t > M.MAX_TRANSCRIPT then table.remove(t, 1) end
  end
  sessions[id] = s
  return s
end

-- The other user of a session.
local function peer_of(s, username)
  return s.users[1] == username and s.users[2] or s.users[1]
end

-- A member of session `s` for `user` (conv: its conversation, nil when
-- the simulator plays it), in the session now.
local function enter(s, user, conv)
  local m = meetings.new_member(s, user, conv)
  m.session = s
  if conv then conv.member = m end
  participants.enter(s, m, false)
  return m
end

-- The session is over: everyone leaves, and each conversation still open
-- has its messaging Disconnected (and offers addMessaging).
local function end_session(s)
  if s.ended then return end
  s.ended = true
  for _, record in ipairs(s.rings) do
    for _, inv in ipairs(record.invs) do
      if not inv.done then conversations.close(inv.conv, M.REASONS.canceled) end
    end
  end
  participants.typing_over(s)
  for _, m in ipairs(meetings.members(s)) do
    participants.leave(s, m)
  end
  for _, conv in pairs(s.convs) do
    if not conv.closed and conv.meeting == s and conv.state == "Connected" then
      conv.messaging_off = true
      conversations.emit_messaging_updated(conv)
      conversations.emit_updated(conv)
    end
  end
end

---------------------------------------------------------------------------
-- ringing: `from` (a member of s) invites user `to`

local incoming_actions, outgoing_actions

-- Rings `to`'s available applications, or lets the simulator answer for a
-- user who has none.  opts: message (a data: URL), subject, importance,
-- answered(ok, reason): called once, when someone accepts (ok) or nobody
-- will.  Returns the control API's record, or nil when the simulator plays `to`.
local function ring(s, from, to, opts)
  local user = directory.user(to)
  local function answered(ok, reason)
    if opts.done then return end
    opts.done = true
    opts.answered(ok, reason)
  end
  if not user then
    timers.after(config.get("step-delay"), function() answered(false, M.REASONS.unknown) end)
    return nil
  end
  local targets = available_for(user.username)
  if #targets == 0 then
    -- played by the simulator: it takes the call
    timers.after(config.get("step-delay"), function()
      if s.ended or opts.done then return end
      enter(s, user, nil)
      answered(true)
    end)
    return nil
  end
  local record = invitations.new_record{ session = s.id, from = from.key, to = user.username }
  s.rings[#s.rings + 1] = record
  for _, app in ipairs(targets) do
    local conv = s.convs[user.username]
    if not (conv and conv.app == app and not conv.closed) then
      conv = conversations.new(app, s, { state = "Incoming", subject = opts.subject, importance = opts.importance,
        threadId = s.thread })
    else
      conv.meeting, conv.state = s, "Incoming"
    end
    local inv = invitations.new(app, conv, "Incoming", "messagingInvitation")
    inv.from, inv.to, inv.message_href, inv.record = from, user.uri, opts.message, record
    inv.actions, inv.session, inv.answered = incoming_actions, s, answered
    record.invs[#record.invs + 1] = inv
    invitations.announce(inv)
    conversations.later(conv, config.get("invite-timeout"), function()
      if inv.done then return end
      record.state = "NoAnswer"
      conversations.close(conv, REASONS.timeout)
      local ringing = false
      for _, other in ipairs(record.invs) do
        if not other.done then ringing = true end
      end
      if not ringing and record.state ~= "Accepted" then answered(false, M.REASONS.noanswer) end
    end)
  end
  opts.record = record
  return record
end

-- The sender's side of a ring: conversation `conv` with its outgoing
-- invitation `inv`; `fresh`: the conversation was made for it
-- (startMessaging), so a failure ends it.
local function answer_for(conv, inv, fresh)
  return function(ok, reason)
    if conv.closed then return end
    if ok then
      conv.messaging_off = nil
      conversations.connected(conv)
    elseif fresh then
      conversations.close(conv, reason)
    else -- addMessaging: the conversation stays, without messaging
      inv.done, inv.state = true, "Failed"
      invitations.emit(inv, "completed", { status = "Failure", reason = reason })
      end_session(conv.meeting)
    end
  end
end

---------------------------------------------------------------------------
-- actions on messagingInvitations

local function accept(_, app, inv)
  local conv, s = inv.conv, inv.session
  local record = inv.record
  record.state = "Accepted"
  for _, other in ipairs(record.invs) do
    if other ~= inv and not other.done then conversations.close(other.conv, REASONS.elsewhere) end
  end
  s.convs[app.user.username] = conv
  conv.state = "Connecting"
  conversations.cancel_timers(conv)
  conversations.later(conv, config.get("step-delay"), function()
    if s.ended then return conversations.close(conv, REASONS.canceled) end
    enter(s, app.user, conv)
    inv.answered(true)
    conv.messaging_off = nil
    conversations.connected(conv)
  end)
  return reply.no_content()
end

local function decline(ctx, _, inv)
  local d, refusal = invitations.read_decline(ctx, inv)
  if not d then return table.unpack(refusal) end
  local record, why = inv.record, d.reason
  conversations.close(inv.conv, REASONS.declined)
  if not d.others or why == "Global" then
    record.state, record.reason = "Declined", why or "Local"
    for _, other in ipairs(record.invs) do
      if not other.done then conversations.close(other.conv, REASONS.elsewhere) end
    end
    inv.answered(false, M.REASONS.declined)
  end
  return reply.no_content()
end

-- The sender cancels: the ringing ends on the other side too.
local function cancel(_, _, inv)
  local record = inv.ring.record
  inv.ring.done = true
  if record then record.state = "Canceled" end
  if inv.fresh then
    conversations.close(inv.conv, REASONS.canceled)
  else
    answer_for(inv.conv, inv, false)(false, REASONS.canceled)
  end
  end_session(inv.session)
  return reply.no_content()
end

incoming_actions = { Incoming = { ["/accept"] = accept, ["/decline"] = decline }, Outgoing = {} }
outgoing_actions = { Incoming = {}, Outgoing = { ["/cancel"] = cancel } }

---------------------------------------------------------------------------
-- startMessaging and addMessaging

-- Reads and checks a startMessaging / addMessaging body: the fields, or
-- nil and the refusal.
local function read_input(ctx, app, with_target)
  if not directory.has_scope(app.scopes, "Conversations.Initiate") then
    return nil, { reply.missing_scope(ctx, "Conversations.Initiate") }
  end
  local input, refusal = reply.input(ctx, not with_target)
  if not input then return nil, refusal end
  local function f(name)
    local v = reply.field(input, name)
    if v == nil then v = ctx.req.query[name] end
    return v
  end
  local a = { to = f("to"), subject = f("subject"), importance = f("importance"), threadId = f("threadId"),
    operationId = f("operationId") }
  for name, v in pairs(a) do
    if type(v) ~= "string" then
      return nil, { reply.bad_parameter(ctx, name .. " must be a string.", name) }
    end
  end
  if with_target then
    if not a.to or not a.to:lower():match("^sip:[^@%s]+@[^@%s]+$") then
      return nil, { reply.bad_parameter(ctx, "to must be a sip: URI.", "to") }
    end
    if directory.normalize(a.to) == app.user.username then
      return nil, { reply.error(ctx, 409, "Conflict", nil, "A conversation needs someone else.") }
    end
  end
  if a.subject and invitations.too_long(a.subject, 250) then
    return nil, { reply.bad_parameter(ctx, "The subject exceeds the maximum length of 250 characters.", "subject") }
  end
  if a.operationId and #a.operationId > 50 then
    return nil, { reply.bad_parameter(ctx, "The operationId exceeds the maximum length of 50 characters.",
      "operationId") }
  end
  if a.importance and not invitations.IMPORTANCE[a.importance] then
    return nil, { reply.bad_parameter(ctx, "importance must be Normal, Urgent or Emergency.", "importance") }
  end
  local links = reply.field(input, "_links")
  local msg = type(links) == "table" and type(links.message) == "table" and links.message.href
  if links ~= nil and msg == nil and type(links) == "table" and links.message ~= nil then
    return nil, { reply.bad_parameter(ctx, "The message link needs an href.", "message") }
  end
  if msg then
    if type(msg) ~= "string" or not msg:lower():match("^data:[^,]*,") then
      return nil, { reply.bad_parameter(ctx, "The message must be a data: URL.", "message") }
    end
    if #msg > M.MAX_MESSAGE then
      return nil, { reply.bad_parameter(ctx, "The message is too long.", "message") }
    end
    a.message = msg
  end
  return a
end

-- The outgoing messagingInvitation of `conv` ringing `to` in session s.
local function invite_from(app, conv, s, a, fresh)
  local inv = invitations.new(app, conv, "Outgoing", "messagingInvitation")
  inv.operationId, inv.message_href, inv.actions = a.operationId, a.message, outgoing_actions
  inv.session, inv.fresh = s, fresh
  inv.importance, inv.subject = a.importance or conv.importance, a.subject or conv.subject
  s.convs[app.user.username] = conv
  local me = enter(s, app.user, conv)
  inv.from, inv.to = me, "sip:" .. directory.normalize(a.to)
  invitations.announce(inv)
  inv.ring = { message = a.message, subject = inv.subject, importance = inv.importance,
    answered = answer_for(conv, inv, fresh) }
  conversations.later(conv, config.get("step-delay"), function()
    if not inv.done then ring(s, me, directory.normalize(a.to), inv.ring) end
  end)
  -- nobody answered in time (every ring may have gone without a word): a
  -- second after the rings' own timeout
  conversations.later(conv, config.get("step-delay") + config.get("invite-timeout") + 1, function()
    if inv.ring.done then return end
    inv.ring.done = true
    inv.ring.answered(false, M.REASONS.noanswer)
  end)
  return inv
end

-- POST <app>/communication/messagingInvitations (startMessaging)
local function start(ctx, app)
  if app.anonymous then
    return reply.error(ctx, 403, "Forbidden", nil, "Anonymous users cannot start a conversation.")
  end
  local a, refusal = read_input(ctx, app, true)
  if not a then return table.unpack(refusal) end
  local s = new_session(app.user.username, directory.normalize(a.to), a)
  local conv = conversations.new(app, s, { subject = a.subject, importance = a.importance, threadId = s.thread })
  local inv = invite_from(app, conv, s, a, true)
  return reply.created(inv.href)
end

-- POST <conv>/messaging/addMessaging: rings the other side again.
local function add(ctx, conv)
  local app = conv.app
  if conv.state ~= "Connected" or not conv.messaging_off then
    return reply.error(ctx, 409, "Conflict", "AlreadyExists", "Messaging is already on in this conversation.")
  end
  local a, refusal = read_input(ctx, app, false)
  if not a then return table.unpack(refusal) end
  local old = conv.meeting
  a.to = "sip:" .. peer_of(old, app.user.username)
  local s = new_session(app.user.username, peer_of(old, app.user.username),
    { subject = conv.subject, threadId = conv.threadId })
  s.convs = old.convs -- the other side's conversation takes the new invitation
  conv.meeting = s
  local inv = invite_from(app, conv, s, a, false)
  return reply.created(inv.href)
end

-- POST <conv>/messaging/stopMessaging
local function stop(ctx, conv)
  if not directory.has_scope(conv.app.scopes, "Conversations.Initiate")
      and not directory.has_scope(conv.app.scopes, "Conversations.Receive") then
    return reply.missing_scope(ctx, "Conversations.Initiate and Receive")
  end
  end_session(conv.meeting)
  return reply.no_content()
end

conversations.set_p2p{
  stop = stop,
  add = add,
  -- a conversation that was in its session ends (left, failed, its
  -- application gone): so does the session; a ring that ends does not
  closed = function(conv)
    local s = conv.meeting
    if s.convs[conv.app.user.username] == conv then s.convs[conv.app.user.username] = nil end
    if conv.member and conv.member.session == s then end_session(s) end
  end,
}

-- <app>/communication/messagingInvitations<rest>
function M.route(ctx, app, rest)
  return invitations.collection_route(ctx, app, rest, "messagingInvitation", start)
end

---------------------------------------------------------------------------
-- the control API: a user the simulator plays talks to someone

-- The open session between users a and b in which a is present, or nil.
local function open_session(a, b)
  local best
  for _, s in pairs(sessions) do
    local m = meetings.member(s, a)
    if not s.ended and m and m.state == "in" and peer_of(s, a) == b and meetings.member(s, b)
        and (not best or s.id > best.id) then
      best = s
    end
  end
  return best
end

-- A session the control API starts: user `from` (present, played by the
-- simulator) rings `to`.  Returns the answer.
local function control_invite(from_user, to, t, message)
  if not directory.user(to) then return 404, { error = "no user " .. to } end
  if #available_for(to) == 0 then return 409, { error = to .. " has no available application" } end
  local s = new_session(from_user.username, to, t)
  local me = enter(s, from_user, nil)
  local record = ring(s, me, to, { message = message and data_url(message), subject = t.subject,
    importance = t.importance, answered = function(ok) if not ok then end_session(s) end end })
  if message then console.said(s, me, message) end -- the invitation's text: the IM's first line
  return 200, { session = s.id, invitation = record.id, state = record.state }
end

local ACTIONS = {}

-- The recipient `to` of a control action by user u, or nil and the refusal.
local function recipient(u, t)
  local to = directory.normalize(t.to)
  if not to or to == "" then return nil, 400, { error = "to is required" } end
  if to == u.username then return nil, 400, { error = "to must be someone else" } end
  return to
end

-- POST /_sim/users/<user>/message { to, text | html }: in the open
-- session with `to`, or a new invitation carrying the text.
function ACTIONS.message(u, t)
  local to, st, err = recipient(u, t)
  if not to then return st, err end
  if type(t.text) ~= "string" and type(t.html) ~= "string" then return 400, { error = "text or html is required" } end
  local text = fmt.clean(t.text or fmt.strip_html(t.html))
  local s = open_session(u.username, to)
  if not s then return control_invite(u, to, t, text) end
  conversations.say(s, u.username, text, t.html and fmt.clean(t.html) or nil)
  return 200, { session = s.id, sent = true }
end

-- POST /_sim/users/<user>/invite { to, message?, subject?, importance? }
function ACTIONS.invite(u, t)
  local to, st, err = recipient(u, t)
  if not to then return st, err end
  if t.message ~= nil and type(t.message) ~= "string" then return 400, { error = "message must be a string" } end
  if t.importance ~= nil and not invitations.IMPORTANCE[t.importance] then
    return 400, { error = "importance must be Normal, Urgent or Emergency" }
  end
  return control_invite(u, to, t, t.message and fmt.clean(t.message))
end

-- POST /_sim/users/<user>/typing { to, typing? }
function ACTIONS.typing(u, t)
  local to, st, err = recipient(u, t)
  if not to then return st, err end
  local s = open_session(u.username, to)
  if not s then return 409, { error = "no open conversation with " .. tostring(to) } end
  participants.set_typing(s, u.username, t.typing ~= false)
  return 200, { session = s.id, typing = t.typing ~= false }
end

-- GET /_sim/users/<user>/messages: what was said in the user's sessions.
function ACTIONS.messages(u)
  local ids = {}
  for id, s in pairs(sessions) do
    if s.users[1] == u.username or s.users[2] == u.username then ids[#ids + 1] = id end
  end
  table.sort(ids, function(x, y) return tonumber(x:sub(3)) < tonumber(y:sub(3)) end)
  local out = fmt.array()
  for _, id in ipairs(ids) do
    local s = sessions[id]
    for _, m in ipairs(s.transcript) do
      out[#out + 1] = { session = id, from = m.from, to = peer_of(s, m.from), text = m.text, html = m.html }
    end
  end
  return 200, { messages = out }
end

-- Is `action` one of this module's control actions (POST, or GET for "messages")?
function M.has_control(action, method)
  return ACTIONS[action] ~= nil and (method == "POST") == (action ~= "messages")
end

-- Runs a control action for directory user `username`: status, answer table.
function M.control(action, username, t)
  local u = directory.user(username)
  if not u then return 404, { error = "no user " .. tostring(username) } end
  return ACTIONS[action](u, t)
end

-- The sessions kept, oldest first (the state dump, the console).
function M.sessions()
  local list = {}
  for _, id in ipairs(order) do
    if sessions[id] then list[#list + 1] = sessions[id] end
  end
  return list
end

-- The sessions, for the state dump.
function M.info()
  local list = fmt.array()
  for _, s in ipairs(M.sessions()) do
    local present = fmt.array()
    for _, m in ipairs(meetings.members(s)) do present[#present + 1] = m.key end
    list[#list + 1] = { id = s.id, users = fmt.array(s.users), present = present, ended = s.ended,
      messages = #s.transcript }
  end
  return list
end

return M
