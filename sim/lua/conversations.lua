-- ucwa-sim: conversations (conversation_ref.md, messaging_ref.md,
-- message_ref.md, setIsTyping_ref.md): an application's view of one meeting,
-- from joining to leaving, with messaging, and the moves that end or start
-- someone's presence in a meeting (lobby admit / reject, eject, the meeting's
-- end).  Who the conversation sees in it is participants.lua.
--
-- An application in a meeting has one conversation, with its own hrefs.
--
-- Fields other modules read: conv.id, .href, .app, .meeting, .member (its
-- own member, once it joins), .state ("Connecting" | "Incoming" | "InLobby" |
-- "Connected" | "Disconnected"), .subject, .importance, .threadId, .closed.
-- The operation that brings a conversation into its meeting (an
-- onlineMeetingInvitation, invitations.lua) hooks itself in as
-- conv.operation, an object with :connected() and :closed(reason, quiet)
-- (true if the operation failed just now).
--
-- A one-to-one IM conversation (messaging.lua) has for its meeting a
-- peer-to-peer session (meeting.p2p): no lobby, leaders or onlineMeeting;
-- conv.messaging_off once messaging has stopped; the handlers messaging.lua
-- registers (M.set_p2p) take stopMessaging, addMessaging and the end of a
-- conversation.
local host = require "ucwasim.host"
local console = require "console"
local directory = require "directory"
local events = require "events"
local fmt = require "formats"
local meetings = require "meetings"
local participants = require "participants"
local plants = require "plants"
local reply = require "reply"
local timers = require "timers"

local is_leader, viewers = participants.is_leader, participants.viewers
local leave, emit_conv = participants.leave, participants.conversation_event

local M = {}

-- Why a conversation or an invitation ends: `reason` on its events.
M.REASONS = {
  denied = { code = "Forbidden", subcode = "Denied",
    message = "The lobby participant was denied from the conference." },
  canceled = { code = "LocalFailure", subcode = "Canceled", message = "The invitation was cancelled." },
  timeout = { code = "Timeout", subcode = "Timeout", message = "The invitation timed out." },
  ended = { code = "RemoteFailure", subcode = "Ended", message = "The conference has finished." },
  notfound = { code = "NotFound", subcode = "DestinationNotFound", message = "The meeting could not be found." },
  declined = { code = "LocalFailure", subcode = "Declined", message = "The invitation was declined." },
  elsewhere = { code = "LocalFailure", subcode = "Canceled",
    message = "The invitation was answered on another endpoint." },
  removed = { code = "RemoteFailure", subcode = "Removed", message = "The user was removed from the conference." },
  ejected = { code = "RemoteFailure", subcode = "Removed",
    message = "The participant was ejected from the conference by a leader." },
}
local REASONS = M.REASONS

-- app -> { convs = { id -> conv }, seq = n }, made on first use; weak, so
-- that a deleted application's entry goes with it.
local of_app = setmetatable({}, { __mode = "k", __index = function(t, app)
  local v = { convs = {}, seq = 0 }
  t[app] = v
  return v
end })

-- A new conversation of `app` in `meeting`.  opts: subject, importance,
-- threadId, state (default the meeting's, "Normal", the meeting's thread,
-- "Connecting").
function M.new(app, meeting, opts)
  local t = of_app[app]
  t.seq = t.seq + 1
  local id = string.format("%x", t.seq) .. host.random(2)
  local conv = {
    id = id,
    app = app,
    meeting = meeting,
    href = app.href .. "/communication/conversations/" .. id,
    state = opts.state or "Connecting",
    subject = opts.subject or meeting.subject,
    importance = opts.importance or "Normal",
    threadId = opts.threadId or meeting.thread,
    created = host.wallclock(),
    timers = {},
    messages = {},
    msg_seq = 0,
  }
  t.convs[id] = conv
  return conv
end

function M.get(app, id)
  return of_app[app].convs[id]
end

-- How many conversations `app` has.
function M.count(app)
  local n = 0
  for _ in pairs(of_app[app].convs) do n = n + 1 end
  return n
end

-- Is `app` in `meeting` already (a conversation not closed)?
function M.in_meeting(app, meeting)
  for _, c in pairs(of_app[app].convs) do
    if c.meeting == meeting and not c.closed then return true end
  end
  return false
end

-- Runs fn after `delay` unless the conversation has closed by then.
function M.later(conv, delay, fn)
  local t = timers.after(delay, function()
    if not conv.closed then fn() end
  end)
  conv.timers[#conv.timers + 1] = t
  return t
end

function M.cancel_timers(conv)
  for _, t in ipairs(conv.timers) do timers.cancel(t) end
  conv.timers = {}
end

---------------------------------------------------------------------------
-- resources

-- Is the conversation's messaging connected?
local function messaging_on(conv)
  return conv.state == "Connected" and not conv.messaging_off
end

local function conv_resource(conv)
  local h = conv.href
  local connected = messaging_on(conv)
  local one_to_one = conv.meeting.p2p
  local res = fmt.resource("conversation", h)
    :prop("activeModalities", connected and { "Messaging" } or {})
    :prop("audienceMessaging", "Enabled")
    :prop("audienceMute", "Disabled")
    :prop("created", fmt.date(conv.created))
    :prop("importance", conv.importance)
    :prop("participantCount", #participants.roster(conv))
    :prop("readLocally", true)
    :prop("recording", false)
    :prop("state", conv.state)
    :prop("subject", conv.subject)
    :prop("threadId", conv.threadId)
  if not one_to_one then
    res:link("attendees", h .. "/attendees"):link("leaders", h .. "/leaders"):link("lobby", h .. "/lobby")
  end
  if conv.member then
    res:link("localParticipant", participants.href(conv, conv.member), conv.member.name)
  end
  res:link("messaging", h .. "/messaging")
  if not one_to_one then res:link("onlineMeeting", h .. "/onlineMeeting") end
  res:link("participants", h .. "/participants")
  return res
end
M.resource = conv_resource

local function messaging_resource(conv)
  local h = conv.href .. "/messaging"
  local connected = messaging_on(conv)
  local res = fmt.resource("messaging", h)
    :prop("negotiatedMessageFormats", { "Plain", "Html" })
    :prop("state", connected and "Connected" or "Disconnected")
    :link("conversation", conv.href)
  if not connected and conv.meeting.p2p and not conv.closed and conv.state ~= "Incoming" then
    res:link("addMessaging", h .. "/addMessaging")
  end
  if connected then
    local p = plants.href("messaging", h, conv.app.host) -- one planted origin for the resource's links
    res:link("sendMessage", p .. "/messages")
      :link("setIsTyping", p .. "/setIsTyping")
      :link("stopMessaging", p .. "/stopMessaging")
      :link("typingParticipants", conv.href .. "/participants/typingParticipants")
  end
  return res
end

local function message_resource(conv, msg)
  local res = fmt.resource("message", msg.href)
    :prop("direction", msg.direction)
    :prop("operationId", msg.operationId)
    :prop("timeStamp", fmt.date(msg.time))
  if msg.from and not msg.from.anonymous then
    res:link("contact", conv.app.href .. "/people/" .. msg.from.key)
  end
  if msg.from then
    res:link("participant", participants.href(conv, msg.from), msg.from.name)
  end
  res:link("messaging", conv.href .. "/messaging")
  if msg.html then
    res:link("htmlMessage", "data:text/html;charset=utf-8," .. fmt.urlencode(msg.html))
  end
  res:link("plainMessage", "data:text/plain;charset=utf-8," .. fmt.urlencode(msg.text))
  return res
end

local function online_meeting_resource(conv)
  local meeting = conv.meeting
  local org = directory.user(meeting.organizer)
  return fmt.resource("onlineMeeting", conv.href .. "/onlineMeeting")
    :prop("onlineMeetingUri", meeting.uri)
    :prop("onlineMeetingId", meeting.id)
    :prop("subject", meeting.subject)
    :prop("organizerUri", "sip:" .. meeting.organizer)
    :prop("organizerName", org and org.name or meeting.organizer)
    :prop("lobbyBypassForPhoneUsers", "Disabled")
    :prop("automaticLeaderAssignment", "Disabled")
    :link("conversation", conv.href)
end

---------------------------------------------------------------------------
-- events

-- An event from the application's `communication` sender.
function M.emit_communication(app, type_, rel, href, res, extra)
  local ev = { type = type_, link = { rel = rel, href = href }, resource = res }
  for k, v in pairs(extra or {}) do ev[k] = v end
  events.emit(app, "high", "communication", app.href .. "/communication", ev)
end

-- `updated conversation` (embedded) to the conversation's application.
function M.emit_updated(conv)
  M.emit_communication(conv.app, "updated", "conversation", conv.href, conv_resource(conv))
end

local function emit_messaging_updated(conv)
  emit_conv(conv, "updated", { rel = "messaging", href = conv.href .. "/messaging" }, messaging_resource(conv))
end
M.emit_messaging_updated = emit_messaging_updated

local p2p = {} -- messaging.lua's handlers: stop(ctx, conv), add(ctx, conv), closed(conv)

-- Registers the handlers of one-to-one IM conversations (messaging.lua).
function M.set_p2p(handlers)
  p2p = handlers
end

-- Ends a conversation: its operation (if still running) completes with
-- `reason`, then the conversation is deleted.  quiet: the application is
-- gone, nothing is told to it.
local function close(conv, reason, quiet)
  if conv.closed then return end
  local app = conv.app
  M.cancel_timers(conv)
  if conv.member then
    leave(conv.meeting, conv.member)
  end
  conv.closed = true
  conv.state = "Disconnected"
  local failed_now = conv.operation and conv.operation:closed(reason, quiet)
  if not quiet then
    M.emit_communication(app, "deleted", "conversation", conv.href, nil,
      { reason = (not failed_now) and reason or nil })
  end
  of_app[app].convs[conv.id] = nil
  if conv.meeting.p2p and p2p.closed then p2p.closed(conv) end
end
M.close = close

-- A connected conversation loses its meeting (ended, ejected): messaging
-- and the conversation go Disconnected, then the conversation is deleted.
local function disconnect(conv, reason)
  if conv.closed then return end
  if conv.state == "Connected" then
    conv.state = "Disconnected"
    emit_messaging_updated(conv)
    M.emit_updated(conv)
  end
  close(conv, reason)
end

-- Takes m out of its meeting: its application's conversation closes with
-- `reason`, a virtual participant just leaves.
local function remove(meeting, m, reason)
  if m.conv then close(m.conv, reason) else leave(meeting, m) end
end
M.remove = remove

-- m is about to enter: another endpoint of the same user already there is
-- removed (RemoteFailure / Removed).
function M.take_seat(meeting, m)
  local old = meetings.member(meeting, m.key)
  if not old then return end
  if old.conv and old.conv ~= m.conv then close(old.conv, REASONS.removed) else leave(meeting, old) end
end

-- The conversation's member is in: it gets the roster and Connected
-- messaging, its operation completes, and the others see it arrive.
local function connected(conv)
  local meeting, me = conv.meeting, conv.member
  conv.state = "Connected"
  participants.event(conv, "added", me, true)
  for _, m in ipairs(participants.roster(conv)) do
    if m ~= me then participants.event(conv, "added", m, true) end
  end
  emit_messaging_updated(conv)
  M.emit_updated(conv)
  if conv.operation then conv.operation:connected() end
  participants.tell_viewers(meeting, conv, "added", me)
end
M.connected = connected

-- Lets a lobby member in.  Returns false if m is not in the lobby.
function M.admit(meeting, m)
  if not meetings.present(meeting, m) or m.state ~= "lobby" then return false end
  for _, v in ipairs(viewers(meeting, m.conv)) do
    if is_leader(v) then participants.event(v, "deleted", m, false) end
  end
  local conv = m.conv
  if conv then
    M.cancel_timers(conv)
    participants.event(conv, "deleted", m, false)
    meetings.seat(meeting, m)
    connected(conv)
  else
    meetings.seat(meeting, m)
    participants.tell_viewers(meeting, nil, "added", m)
  end
  return true
end

-- Turns a lobby member away (Forbidden / Denied).
function M.reject(meeting, m)
  if not meetings.present(meeting, m) or m.state ~= "lobby" then return false end
  remove(meeting, m, REASONS.denied)
  return true
end

-- A leader ejects a member: its application's conversation ends
-- (RemoteFailure / Removed, "ejected"); the others get `deleted participant`.
function M.eject(meeting, m)
  if not meetings.present(meeting, m) then return false end
  if m.conv then disconnect(m.conv, REASONS.ejected) else leave(meeting, m) end
  return true
end

-- The meeting ends: every conversation in it, or still joining or ringing,
-- is disconnected (RemoteFailure / Ended).
function M.end_meeting(meeting)
  if meeting.ended then return end
  local list = {}
  for _, m in ipairs(meetings.members(meeting)) do
    if m.conv then list[#list + 1] = m.conv end
  end
  for _, t in pairs(of_app) do
    for _, c in pairs(t.convs) do
      if c.meeting == meeting and not c.member then list[#list + 1] = c end
    end
  end
  meetings.mark_ended(meeting)
  for _, conv in ipairs(list) do
    disconnect(conv, REASONS.ended)
  end
  participants.typing_over(meeting)
  meetings.clear_members(meeting)
end

-- The application is gone (deleted, expired, forgotten or reset for
-- resume): its conversations close without telling it.
function M.app_gone(app)
  local t = of_app[app]
  for _, conv in pairs(t.convs) do
    close(conv, nil, true)
  end
  t.convs = {}
end

---------------------------------------------------------------------------
-- messaging

-- Keeps `msg` as the conversation's next message (its href and time set).
local function add_message(conv, msg)
  conv.msg_seq = conv.msg_seq + 1
  msg.href = conv.href .. "/messaging/messages/" .. conv.msg_seq
  msg.time = host.wallclock()
  conv.messages[conv.msg_seq] = msg
  return msg
end

local function message_event(conv, type_, msg, extra)
  emit_conv(conv, type_, { rel = "message", href = msg.href }, message_resource(conv, msg), extra)
end

local function deliver_message(meeting, from, text, html, except)
  if meeting.on_message then meeting.on_message(from, text, html) end -- a one-to-one session's transcript
  console.said(meeting, from, text, html)
  for _, v in ipairs(viewers(meeting, except)) do
    local msg = add_message(v, { direction = "Incoming", from = from, text = text, html = html })
    message_event(v, "completed", msg, { status = "Success" })
  end
end

-- A participant (virtual or not) says something to everyone else (control
-- API): nil and a message if it is not in the meeting.
function M.say(meeting, from_key, text, html)
  local from = meetings.member(meeting, from_key)
  if not from or from.state ~= "in" then return nil, "no such participant in the meeting" end
  participants.typing_stop(meeting, from)
  deliver_message(meeting, from, text, html, from.conv)
  return true
end

-- POST <conv>/messaging/messages (text/plain or text/html)
local function send_message(ctx, conv)
  local req = ctx.req
  local app = conv.app
  if not directory.has_scope(app.scopes, "Conversations.Initiate") then
    return reply.missing_scope(ctx, "Conversations.Initiate")
  end
  if not messaging_on(conv) then
    return reply.error(ctx, 409, "Conflict", nil, "The conversation's messaging is not connected.")
  end
  if req.too_large then
    return reply.error(ctx, 413, "EntityTooLarge", nil, "The request is too large.")
  end
  local ct = (req.headers["content-type"] or ""):lower()
  local text, html
  if ct:find("^text/plain") then
    text = fmt.clean(req.body)
  elseif ct:find("^text/html") then
    html = fmt.clean(req.body)
    text = fmt.strip_html(html)
  else
    return reply.error(ctx, 415, "UnsupportedMediaType", nil, "sendMessage takes text/plain or text/html.")
  end
  local opid = req.query.operationId
  if opid and #opid > 50 then
    return reply.bad_parameter(ctx, "The operationId exceeds 50 characters.", "operationId")
  end
  local msg = add_message(conv,
    { direction = "Outgoing", from = conv.member, text = text, html = html, operationId = opid })
  message_event(conv, "started", msg)
  M.later(conv, 0, function()
    message_event(conv, "completed", msg, { status = "Success" })
    participants.typing_stop(conv.meeting, conv.member)
    deliver_message(conv.meeting, conv.member, text, html, conv)
  end)
  return reply.created(msg.href)
end

-- POST <conv>/messaging/setIsTyping
local function set_is_typing(ctx, conv)
  local scopes = conv.app.scopes
  if not directory.has_scope(scopes, "Conversations.Initiate")
      and not directory.has_scope(scopes, "Conversations.Receive") then
    return reply.missing_scope(ctx, "Conversations.Initiate and Receive")
  end
  if conv.state ~= "Connected" or not conv.member or conv.member.state ~= "in" then
    return reply.error(ctx, 409, "Conflict", nil, "The conversation is not connected.")
  end
  participants.typing_start(conv.meeting, conv.member)
  return reply.no_content()
end

---------------------------------------------------------------------------
-- routes under <conv>

-- POST <participant>/admit, /reject, /eject, /promote, /demote
local function leader_action(ctx, conv, target, action)
  local meeting = conv.meeting
  if action == "admit" or action == "reject" then
    if not is_leader(conv) then
      return reply.error(ctx, 403, "Forbidden", nil, "Only leaders can admit or reject lobby participants.")
    end
    if target.state ~= "lobby" then
      return reply.error(ctx, 409, "Conflict", nil, "The participant is not in the lobby.")
    end
    if action == "admit" then M.admit(meeting, target) else M.reject(meeting, target) end
    return reply.no_content()
  end
  if not is_leader(conv) then
    return reply.error(ctx, 403, "Forbidden", nil, "Only leaders can eject, promote or demote participants.")
  end
  if target == conv.member or target.state ~= "in" then
    return reply.error(ctx, 409, "Conflict", nil, "The participant is not an other participant in the meeting.")
  end
  if action == "eject" then
    M.eject(meeting, target)
  else
    local role = action == "promote" and "Leader" or "Attendee"
    if target.role == role then
      return reply.error(ctx, 409, "Conflict", nil, "The participant is already " .. role:lower() .. ".")
    end
    participants.set_role(meeting, target, role)
  end
  return reply.no_content()
end

-- GET <conv>/messaging/messages/<n>
local function get_message(ctx, conv, n)
  local msg = conv.messages[n]
  if not msg then return reply.not_found(ctx) end
  return reply.resource(ctx, 200, message_resource(conv, msg))
end

local LEADER_ACTIONS = { admit = true, reject = true, eject = true, promote = true, demote = true }
local COLLECTIONS = { participants = true, lobby = true, attendees = true, leaders = true }

-- <conv><rest>
function M.route(ctx, conv, rest)
  if rest == "" then
    return reply.by_method(ctx, {
      GET = function() return reply.resource(ctx, 200, conv_resource(conv)) end,
      DELETE = function()
        close(conv) -- a running invitation completes as cancelled
        return reply.no_content()
      end,
    })
  end
  local rel = rest:match("^/(%a+)$")
  if rel and COLLECTIONS[rel] then
    return reply.get_only(ctx, function()
      return participants.collection(conv, rel, rel ~= "participants" and rel or nil)
    end)
  end
  if rest == "/participants/typingParticipants" then
    return reply.get_only(ctx, function() return participants.typing_resource(conv) end)
  end
  local key, action = rest:match("^/participants/([^/]+)(.*)$")
  if key then
    local target = meetings.member(conv.meeting, key)
    if not target or not participants.visible(conv, target) then return reply.not_found(ctx) end
    if action == "" then
      return reply.get_only(ctx, function() return participants.resource(conv, target) end)
    end
    action = action:match("^/(%a+)$")
    if not LEADER_ACTIONS[action] then return reply.not_found(ctx) end
    return reply.only(ctx, "POST", leader_action, ctx, conv, target, action)
  end
  if rest == "/messaging" then
    return reply.get_only(ctx, function() return messaging_resource(conv) end)
  elseif rest == "/messaging/messages" then
    return reply.only(ctx, "POST", send_message, ctx, conv)
  elseif rest == "/messaging/stopMessaging" then
    if conv.meeting.p2p and p2p.stop then return reply.only(ctx, "POST", p2p.stop, ctx, conv) end
    return reply.only(ctx, "POST", reply.no_content)
  elseif rest == "/messaging/addMessaging" and conv.meeting.p2p and p2p.add then
    return reply.only(ctx, "POST", p2p.add, ctx, conv)
  elseif rest == "/messaging/setIsTyping" then
    return reply.only(ctx, "POST", set_is_typing, ctx, conv)
  end
  local n = rest:match("^/messaging/messages/(%d+)$")
  if n then
    return reply.only(ctx, "GET", get_message, ctx, conv, tonumber(n))
  end
  if rest == "/onlineMeeting" and not conv.meeting.p2p then
    return reply.get_only(ctx, function() return online_meeting_resource(conv) end)
  end
  return reply.not_found(ctx)
end

-- GET <app>/communication/conversations
function M.list_route(ctx, app)
  return reply.get_only(ctx, function()
    local t = of_app[app]
    local ids = {}
    for id in pairs(t.convs) do ids[#ids + 1] = id end
    table.sort(ids)
    local list = {}
    for i, id in ipairs(ids) do list[i] = { href = t.convs[id].href } end
    return fmt.resource("conversations", app.href .. "/communication/conversations"):link_list("conversation", list)
  end)
end

return M
