-- ucwa-sim: onlineMeetingInvitation operations (onlineMeetingInvitation_ref.md,
-- joinOnlineMeeting_ref.md, OperationResource.md): joining or starting a
-- meeting, through the lobby when it has one, and incoming invitations from
-- another participant (control API), answered with accept or decline.
--
-- The same operations carry messagingInvitations (messaging.lua): an
-- invitation's `rel` names its kind, and `inv.actions` (by direction) its
-- own accept/decline/cancel when they differ from a meeting's.
--
-- An invitation is the operation of one conversation (conv.operation, with
-- the methods :connected() and :closed(reason, quiet) conversations.lua
-- calls): it completes when the conversation connects (Success) or closes
-- first (Failure, with the reason).
--
-- The state machine of a join, each step --step-delay after the last:
--   started (Connecting) -> [lobby: updated, InLobby ... admitted]
--     -> completed Success (Connected)
--   or -> completed Failure (Denied, Canceled, Timeout, Ended, ...)
local config = require "config"
local console = require "console"
local conversations = require "conversations"
local directory = require "directory"
local fmt = require "formats"
local meetings = require "meetings"
local participants = require "participants"
local reply = require "reply"

local M = {}

local REASONS = conversations.REASONS

-- app -> { invs = { n -> inv }, seq = n }, made on first use (weak keys).
local of_app = setmetatable({}, { __mode = "k", __index = function(t, app)
  local v = { invs = {}, seq = 0 }
  t[app] = v
  return v
end })
local records, record_seq = {}, 0 -- incoming invitations, for the control API

local function inv_resource(inv)
  local conv = inv.conv
  local meeting_inv = inv.rel == "onlineMeetingInvitation"
  local res = fmt.resource(inv.rel, inv.href)
    :prop("anonymousDisplayName", inv.anonymousDisplayName)
    :prop("availableModalities", meeting_inv and { "Messaging" } or nil)
    :prop("direction", inv.direction)
    :prop("importance", inv.importance)
    :prop("onlineMeetingUri", meeting_inv and conv.meeting.uri or nil)
    :prop("operationId", inv.operationId)
    :prop("state", inv.state)
    :prop("subject", inv.subject)
    :prop("threadId", inv.threadId)
    :prop("to", inv.to)
  if inv.message_href then -- a messagingInvitation's first message, as its sender gave it
    res:link("message", inv.message_href)
  elseif inv.message then
    res:link("message", "data:text/plain;charset=utf-8," .. fmt.urlencode(inv.message))
  end
  if inv.from then
    res:link("from", participants.href(conv, inv.from), inv.from.name)
  end
  if not inv.done then
    if inv.direction == "Incoming" then
      res:link("accept", inv.href .. "/accept"):link("decline", inv.href .. "/decline")
    else
      res:link("cancel", inv.href .. "/cancel")
    end
  end
  res:link("conversation", conv.href)
  if not meeting_inv then res:link("messaging", conv.href .. "/messaging") end
  if inv.direction == "Incoming" and inv.from then
    res:embed("from", participants.resource(conv, inv.from))
  end
  return res
end

local function emit(inv, type_, extra)
  console.changed("invitation", inv)
  conversations.emit_communication(inv.conv.app, type_, inv.rel, inv.href, inv_resource(inv), extra)
end
M.emit = emit

-- An invitation starts: `started onlineMeetingInvitation`, `added conversation`.
local function announce(inv)
  emit(inv, "started")
  local conv = inv.conv
  conversations.emit_communication(conv.app, "added", "conversation", conv.href, conversations.resource(conv))
end
M.announce = announce

-- The invitation's end, whichever way its conversation goes.
local operation = {}
operation.__index = operation

function operation:connected()
  if self.done then return end
  self.done = true
  self.state = "Connected"
  emit(self, "completed", { status = "Success" })
end

function operation:closed(reason, quiet)
  local failed_now = false
  if not self.done then
    self.done = true
    if not quiet then
      failed_now = true
      reason = reason or REASONS.canceled
      self.state = reason == REASONS.canceled and "Cancelled" or reason == REASONS.declined and "Declined" or "Failed"
      emit(self, "completed", { status = "Failure", reason = reason })
    end
  end
  -- An incoming invitation's record keeps its invitations only while one rings.
  local record = self.record
  if record then
    local ringing = false
    for _, other in ipairs(record.invs) do
      if not other.done then ringing = true end
    end
    if not ringing then record.invs = {} end
  end
  return failed_now
end

-- A new invitation, the operation of conversation `conv`; rel: its kind
-- (default onlineMeetingInvitation), whose collection holds it.
local function new_inv(app, conv, direction, rel)
  local t = of_app[app]
  t.seq = t.seq + 1
  rel = rel or "onlineMeetingInvitation"
  local inv = setmetatable({
    n = t.seq,
    rel = rel,
    href = app.href .. "/communication/" .. rel .. "s/" .. t.seq,
    conv = conv,
    direction = direction,
    state = "Connecting",
    importance = conv.importance,
    subject = conv.subject,
    threadId = conv.threadId,
  }, operation)
  t.invs[inv.n] = inv
  conv.operation = inv
  return inv
end
M.new = new_inv

---------------------------------------------------------------------------
-- joinOnlineMeeting / startOnlineMeeting

-- The conversation's member arrives in the meeting: in the lobby if
-- `may_wait` and the meeting keeps it there, else straight in.
local function arrive(conv, inv, may_wait)
  local meeting, m = conv.meeting, conv.member
  if meeting.ended then
    conversations.close(conv, REASONS.ended)
    return
  end
  conversations.take_seat(meeting, m)
  if not (may_wait and meetings.needs_lobby(meeting, m)) then
    participants.enter(meeting, m, false)
    conversations.connected(conv)
    return
  end
  participants.enter(meeting, m, true)
  conv.state = "InLobby"
  participants.event(conv, "added", m, true)
  conversations.emit_updated(conv)
  emit(inv, "updated")
  conversations.later(conv, config.get("lobby-timeout"), function()
    if m.state == "lobby" then
      conversations.close(conv, REASONS.timeout)
    end
  end)
end

local IMPORTANCE = { Normal = true, Urgent = true, Emergency = true }
M.IMPORTANCE = IMPORTANCE

local function too_long(s, n)
  local len = utf8.len(s)
  return len ~= nil and len > n
end
M.too_long = too_long

-- POST <app>/communication/onlineMeetingInvitations[?onlineMeetingUri=adhoc]
local function join(ctx, app)
  if not directory.has_scope(app.scopes, "Conversations.Initiate") then
    return reply.missing_scope(ctx, "Conversations.Initiate")
  end
  local input, refusal = reply.input(ctx, true)
  if not input then return table.unpack(refusal) end
  local function f(name)
    local v = reply.field(input, name)
    if v == nil then v = ctx.req.query[name] end
    return v
  end
  local uri, subject, importance = f("onlineMeetingUri"), f("subject"), f("importance")
  local threadId, operationId, anonName = f("threadId"), f("operationId"), f("anonymousDisplayName")
  for name, v in pairs({ onlineMeetingUri = uri, subject = subject, importance = importance, threadId = threadId,
    operationId = operationId, anonymousDisplayName = anonName }) do
    if type(v) ~= "string" then
      return reply.bad_parameter(ctx, name .. " must be a string.", name)
    end
  end
  if subject and too_long(subject, 250) then
    return reply.bad_parameter(ctx, "The subject exceeds the maximum length of 250 characters.", "subject")
  end
  if operationId and #operationId > 50 then
    return reply.bad_parameter(ctx, "The operationId exceeds the maximum length of 50 characters.", "operationId")
  end
  if importance and not IMPORTANCE[importance] then
    return reply.bad_parameter(ctx, "importance must be Normal, Urgent or Emergency.", "importance")
  end
  if anonName and not app.anonymous then
    return reply.bad_parameter(ctx, "anonymousDisplayName is only for anonymous users.",
      "anonymousDisplayName")
  end
  if app.anonymous and (not anonName or anonName == "") then
    return reply.bad_parameter(ctx, "anonymousDisplayName is required for anonymous users.",
      "anonymousDisplayName")
  end
  if anonName and too_long(anonName, 250) then
    return reply.bad_parameter(ctx, "The anonymousDisplayName exceeds the maximum length of 250 characters.",
      "anonymousDisplayName")
  end
  local meeting
  if uri == "adhoc" or uri == nil or uri == "" then
    if app.anonymous then
      return reply.error(ctx, 403, "Forbidden", "AnonymousNotAllowed", "Anonymous users cannot start a meeting.")
    end
    meeting = meetings.add({ organizer = app.user.username, subject = subject or "", lobby = true })
  else
    meeting = meetings.find(uri)
    if not meeting then
      return reply.error(ctx, 404, "NotFound", "DestinationNotFound", "The meeting could not be found.")
    end
    if app.anonymous and meeting.id ~= app.meeting_id then
      return reply.error(ctx, 403, "Forbidden", nil,
        "The target conference URI does not match the conference URI provisioned in anonymous web ticket.")
    end
  end
  if conversations.in_meeting(app, meeting) then
    return reply.error(ctx, 409, "Conflict", "AlreadyExists", "The application is already in this meeting.")
  end
  local conv = conversations.new(app, meeting, { subject = subject, importance = importance, threadId = threadId })
  local inv = new_inv(app, conv, "Outgoing")
  inv.operationId = operationId
  inv.anonymousDisplayName = anonName
  local me = meetings.new_member(meeting, app.user, conv, anonName)
  conv.member = me
  inv.from = me
  inv.to = meeting.uri
  announce(inv)
  conversations.later(conv, config.get("step-delay"), function()
    if meeting.ended then
      conversations.close(conv, REASONS.notfound)
    else
      arrive(conv, inv, true)
    end
  end)
  return reply.created(inv.href)
end

---------------------------------------------------------------------------
-- incoming: another participant invites a user (control API)

-- `from_key` (made to join if it is not in) invites `to_username`, ringing
-- each of `targets` (the user's available applications).  Returns the
-- invitation record { id=, meeting=, from=, to=, state=, reason= }, or nil
-- and a message.
function M.invite(meeting, from_key, to_username, targets, message)
  if meeting.ended then return nil, "the meeting has ended" end
  local from, err = participants.bring_in(meeting, from_key)
  if not from then return nil, err end
  if #targets == 0 then return nil, to_username .. " has no available application" end
  local record = M.new_record{ meeting = meeting.id, from = from.key, to = to_username }
  for _, app in ipairs(targets) do
    local conv = conversations.new(app, meeting, { state = "Incoming" })
    local inv = new_inv(app, conv, "Incoming")
    inv.from = from
    inv.to = app.user.uri
    inv.message = message
    inv.record = record
    record.invs[#record.invs + 1] = inv
    announce(inv)
    conversations.later(conv, config.get("invite-timeout"), function()
      if not inv.done then
        record.state = "NoAnswer"
        conversations.close(conv, REASONS.timeout)
      end
    end)
  end
  return record
end

-- A new record of an incoming invitation (fields: from, to, meeting or
-- session), Ringing, for the control API; `invs`: the invitations that ring.
function M.new_record(fields)
  record_seq = record_seq + 1
  local record = { id = record_seq, state = "Ringing", invs = {} }
  for k, v in pairs(fields) do record[k] = v end
  records[record.id] = record
  return record
end

-- The record of incoming invitation `id`, for the control API.
function M.record(id)
  local r = records[id]
  return r and { id = r.id, state = r.state, reason = r.reason, from = r.from, to = r.to, meeting = r.meeting,
    session = r.session }
end

local function accept(_, app, inv)
  local conv, meeting = inv.conv, inv.conv.meeting
  if meeting.ended then
    conversations.close(conv, REASONS.ended)
    return reply.no_content()
  end
  local record = inv.record
  record.state = "Accepted"
  for _, other in ipairs(record.invs) do
    if other ~= inv and not other.done then
      conversations.close(other.conv, REASONS.elsewhere)
    end
  end
  local me = meetings.new_member(meeting, app.user, conv)
  conv.member = me
  conv.state = "Connecting"
  conversations.cancel_timers(conv)
  conversations.later(conv, config.get("step-delay"), function() arrive(conv, inv, false) end)
  return reply.no_content()
end

-- Reads a decline of incoming invitation `inv`: its reason (nil, "Local",
-- "Global" or "Unknown") and whether another invitation of its record still
-- rings; or nil and the refusal.
function M.read_decline(ctx, inv)
  local input, refusal = reply.input(ctx, true)
  if not input then return nil, refusal end
  local why = reply.field(input, "reason")
  if why ~= nil and why ~= "Local" and why ~= "Global" and why ~= "Unknown" then
    return nil, { reply.bad_parameter(ctx, "reason must be Local, Global or Unknown.", "reason") }
  end
  local others = false
  for _, other in ipairs(inv.record.invs) do
    if other ~= inv and not other.done then others = true end
  end
  return { reason = why, others = others }
end

local function decline(ctx, _, inv)
  local d, refusal = M.read_decline(ctx, inv)
  if not d then return table.unpack(refusal) end
  local record, why = inv.record, d.reason
  if not d.others or why == "Global" then
    record.state = "Declined"
    record.reason = why or "Local"
  end
  conversations.close(inv.conv, REASONS.declined)
  return reply.no_content()
end

local function cancel(_, _, inv)
  conversations.close(inv.conv, REASONS.canceled)
  return reply.no_content()
end

-- Which actions an invitation has, by direction.
local ACTIONS = {
  Incoming = { ["/accept"] = accept, ["/decline"] = decline },
  Outgoing = { ["/cancel"] = cancel },
}

---------------------------------------------------------------------------
-- routes

-- POST <invitation>/accept, /decline (incoming) or /cancel (outgoing)
local function act_on(ctx, app, inv, action)
  local act = (inv.actions or ACTIONS)[inv.direction][action]
  if not act then return reply.not_found(ctx) end
  if inv.done then
    return reply.error(ctx, 409, "Conflict", nil, "The invitation has already completed.")
  end
  if inv.direction == "Incoming" and not directory.has_scope(app.scopes, "Conversations.Receive") then
    return reply.missing_scope(ctx, "Conversations.Receive")
  end
  return act(ctx, app, inv)
end

-- <app>/communication/<rel>s/<n><rest>: GET, or an action on the invitation.
function M.invitation_route(ctx, app, rest, rel)
  local n, action = rest:match("^/(%d+)(.*)$")
  local inv = n and of_app[app].invs[tonumber(n)]
  if not inv or inv.rel ~= rel then return reply.not_found(ctx) end
  if action == "" then
    return reply.get_only(ctx, function() return inv_resource(inv) end)
  end
  return reply.only(ctx, "POST", act_on, ctx, app, inv, action)
end

-- <app>/communication/<rel>s<rest>: a POST to the collection starts one
-- (start(ctx, app)); below it, the invitations of that kind.
function M.collection_route(ctx, app, rest, rel, start)
  if rest == "" then
    return reply.only(ctx, "POST", start, ctx, app)
  end
  return M.invitation_route(ctx, app, rest, rel)
end

-- <app>/communication/onlineMeetingInvitations<rest>
function M.route(ctx, app, rest)
  return M.collection_route(ctx, app, rest, "onlineMeetingInvitation", join)
end

-- The application is gone: so are its invitations.
function M.app_gone(app)
  of_app[app].invs = {}
end

return M
