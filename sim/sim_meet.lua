-- ucwa-sim: online meetings, onlineMeetingInvitation operations, conversations,
-- participants, the lobby and messaging (onlineMeetingInvitation_ref.md,
-- joinOnlineMeeting_ref.md, OperationResource.md, participant_ref.md,
-- lobby_ref.md, messaging_ref.md, message_ref.md, ReceiveAnIM.md).
--
-- A meeting is shared by every application in it; each application sees it
-- through its own conversation (its own hrefs).  A member of a meeting is
-- either an application's user (member.conv set) or a virtual participant
-- driven by the control API (member.conv nil).
return function(S)
  local fmt = S.fmt
  local host = S.host
  local M = {}

  local REASONS = {
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
  M.REASONS = REASONS

  local function step_delay()
    return S.cfg["step-delay"]
  end

  ---------------------------------------------------------------------------
  -- hrefs and resources, from the point of view of one conversation

  local function phref(conv, member)
    return conv.href .. "/participants/" .. member.key
  end

  local function in_rel(member)
    if member.state == "lobby" then return "lobby" end
    if member.role == "Leader" then return "leaders" end
    return "attendees"
  end

  local function is_leader(conv)
    return conv.member and conv.member.role == "Leader" and conv.member.state == "in"
  end

  local function participant_resource(conv, m)
    local h = phref(conv, m)
    local app = conv.app
    local res = fmt.resource("participant", h)
      :prop("anonymous", m.anonymous and true or false)
      :prop("inLobby", m.state == "lobby")
      :prop("local", m.conv == conv)
      :prop("name", m.name)
      :prop("organizer", m.key == conv.meeting.organizer)
      :prop("role", m.role)
      :prop("sourceNetwork", m.anonymous and "PublicCloud" or "SameEnterprise")
      :prop("uri", m.uri)
    if m.state == "lobby" and m.conv ~= conv and is_leader(conv) then
      res:link("admit", h .. "/admit"):link("reject", h .. "/reject")
    end
    if m.state == "in" and m ~= conv.member and is_leader(conv) then
      if m.role == "Leader" then res:link("demote", h .. "/demote") end
      res:link("eject", h .. "/eject")
      if m.role ~= "Leader" then res:link("promote", h .. "/promote") end
    end
    if not m.anonymous then
      res:link("contact", app.href .. "/people/" .. m.key)
    end
    res:link("conversation", conv.href)
    if m.conv == conv then
      res:link("me", app.href .. "/me")
    end
    res:link("participantMessaging", h .. "/participantMessaging")
    return res
  end
  M.participant_resource = participant_resource

  local function visible(conv, m)
    if conv.meeting.members[m.key] ~= m then return false end
    if m.conv == conv then return true end
    if m.state == "in" then return true end
    return m.state == "lobby" and is_leader(conv)
  end

  local function roster(conv, which)
    local list = {}
    for _, key in ipairs(conv.meeting.member_order) do
      local m = conv.meeting.members[key]
      if m and visible(conv, m) and (which == nil or in_rel(m) == which) then
        list[#list + 1] = m
      end
    end
    return list
  end

  local function conv_resource(conv)
    local h = conv.href
    local connected = conv.state == "Connected"
    local res = fmt.resource("conversation", h)
      :prop("activeModalities", connected and { "Messaging" } or {})
      :prop("audienceMessaging", "Enabled")
      :prop("audienceMute", "Disabled")
      :prop("created", fmt.date(conv.created))
      :prop("importance", conv.importance)
      :prop("participantCount", #roster(conv))
      :prop("readLocally", true)
      :prop("recording", false)
      :prop("state", conv.state)
      :prop("subject", conv.subject)
      :prop("threadId", conv.threadId)
      :link("attendees", h .. "/attendees")
      :link("leaders", h .. "/leaders")
      :link("lobby", h .. "/lobby")
    if conv.member then
      res:link("localParticipant", phref(conv, conv.member), conv.member.name)
    end
    res:link("messaging", h .. "/messaging")
      :link("onlineMeeting", h .. "/onlineMeeting")
      :link("participants", h .. "/participants")
    return res
  end
  M.conv_resource = conv_resource

  local function messaging_resource(conv)
    local h = conv.href .. "/messaging"
    local connected = conv.state == "Connected"
    local res = fmt.resource("messaging", h)
      :prop("negotiatedMessageFormats", { "Plain", "Html" })
      :prop("state", connected and "Connected" or "Disconnected")
      :link("conversation", conv.href)
    if connected then
      res:link("sendMessage", h .. "/messages")
        :link("setIsTyping", h .. "/setIsTyping")
        :link("stopMessaging", h .. "/stopMessaging")
        :link("typingParticipants", conv.href .. "/participants/typingParticipants")
    end
    return res
  end

  local function inv_resource(inv)
    local conv = inv.conv
    local res = fmt.resource("onlineMeetingInvitation", inv.href)
      :prop("anonymousDisplayName", inv.anonymousDisplayName)
      :prop("availableModalities", { "Messaging" })
      :prop("direction", inv.direction)
      :prop("importance", inv.importance)
      :prop("onlineMeetingUri", conv.meeting.uri)
      :prop("operationId", inv.operationId)
      :prop("state", inv.state)
      :prop("subject", inv.subject)
      :prop("threadId", inv.threadId)
      :prop("to", inv.to)
    if inv.message then
      res:link("message", "data:text/plain;charset=utf-8," .. fmt.urlencode(inv.message))
    end
    if inv.from then
      res:link("from", phref(conv, inv.from), inv.from.name)
    end
    if not inv.done then
      if inv.direction == "Incoming" then
        res:link("accept", inv.href .. "/accept"):link("decline", inv.href .. "/decline")
      else
        res:link("cancel", inv.href .. "/cancel")
      end
    end
    res:link("conversation", conv.href)
    if inv.direction == "Incoming" and inv.from then
      res:embed("from", participant_resource(conv, inv.from))
    end
    return res
  end
  M.inv_resource = inv_resource

  local function message_resource(conv, msg)
    local res = fmt.resource("message", msg.href)
      :prop("direction", msg.direction)
      :prop("operationId", msg.operationId)
      :prop("timeStamp", fmt.date(msg.time))
    if msg.from and not msg.from.anonymous then
      res:link("contact", conv.app.href .. "/people/" .. msg.from.key)
    end
    if msg.from then
      res:link("participant", phref(conv, msg.from), msg.from.name)
    end
    res:link("messaging", conv.href .. "/messaging")
    if msg.html then
      res:link("htmlMessage", "data:text/html;charset=utf-8," .. fmt.urlencode(msg.html))
    end
    res:link("plainMessage", "data:text/plain;charset=utf-8," .. fmt.urlencode(msg.text))
    return res
  end

  ---------------------------------------------------------------------------
  -- events

  local function comm_href(app)
    return app.href .. "/communication"
  end

  local function emit_comm(app, type_, rel, href, res, extra)
    local ev = { type = type_, link = { rel = rel, href = href }, resource = res }
    for k, v in pairs(extra or {}) do ev[k] = v end
    S.emit(app, "high", "communication", comm_href(app), ev)
  end

  local function emit_conv(conv, type_, link, res, extra)
    local ev = { type = type_, link = link, resource = res }
    for k, v in pairs(extra or {}) do ev[k] = v end
    S.emit(conv.app, "high", "conversation", conv.href, ev)
  end

  local function emit_participant(conv, type_, m, embed)
    emit_conv(conv, type_, { rel = "participant", href = phref(conv, m), title = m.name },
      embed and participant_resource(conv, m) or nil,
      { ["in"] = { rel = in_rel(m), href = conv.href .. "/" .. in_rel(m) } })
  end

  local function emit_conv_updated(conv)
    emit_comm(conv.app, "updated", "conversation", conv.href, conv_resource(conv))
  end

  -- Every other connected application in the meeting.
  local function viewers(meeting, except)
    local list = {}
    for _, key in ipairs(meeting.member_order) do
      local m = meeting.members[key]
      if m and m.conv and m.conv ~= except and m.state == "in" and m.conv.state == "Connected" then
        list[#list + 1] = m.conv
      end
    end
    return list
  end

  local function compact_order(meeting)
    local order = {}
    for _, key in ipairs(meeting.member_order) do
      if meeting.members[key] then order[#order + 1] = key end
    end
    meeting.member_order = order
  end

  ---------------------------------------------------------------------------
  -- typing (setIsTyping_ref, typingParticipants_ref): the others get `added
  -- participant` in typingParticipants; `deleted` after --typing-timeout
  -- without another setIsTyping, when the participant sends a message or
  -- when it leaves.

  local function typing_event(meeting, m, type_)
    for _, v in ipairs(viewers(meeting, m.conv)) do
      emit_conv(v, type_, { rel = "participant", href = phref(v, m), title = m.name }, nil,
        { ["in"] = { rel = "typingParticipants", href = v.href .. "/participants/typingParticipants" } })
    end
  end

  local function typing_stop(meeting, m)
    local t = meeting.typing[m.key]
    if not t or t.member ~= m then return false end
    S.cancel(t.timer)
    meeting.typing[m.key] = nil
    if meeting.members[m.key] == m and m.state == "in" then
      typing_event(meeting, m, "deleted")
    end
    return true
  end
  M.typing_stop = typing_stop

  -- The member is typing (again): the timer restarts.
  local function typing_start(meeting, m)
    local t = meeting.typing[m.key]
    if t and t.member ~= m then
      S.cancel(t.timer)
      t = nil
    end
    if t then
      S.cancel(t.timer)
    else
      t = { member = m }
      meeting.typing[m.key] = t
      typing_event(meeting, m, "added")
    end
    t.timer = S.after(S.cfg["typing-timeout"], function()
      if meeting.typing[m.key] == t then typing_stop(meeting, m) end
    end)
  end
  M.typing_start = typing_start

  ---------------------------------------------------------------------------
  -- the operation's end

  local function cancel_timers(conv)
    for _, t in ipairs(conv.timers) do S.cancel(t) end
    conv.timers = {}
  end

  local function later(conv, delay, fn)
    local t = S.after(delay, function()
      if conv.closed or conv.app.deleted then return end
      fn()
    end)
    conv.timers[#conv.timers + 1] = t
    return t
  end

  -- Removes a member from its meeting, telling the other members' applications.
  local function member_leave(meeting, m, reason)
    if meeting.members[m.key] ~= m then return end
    typing_stop(meeting, m)
    local was = in_rel(m)
    for _, v in ipairs(viewers(meeting, m.conv)) do
      if m.state == "in" or (m.state == "lobby" and is_leader(v)) then
        emit_conv(v, "deleted", { rel = "participant", href = phref(v, m), title = m.name }, nil,
          { ["in"] = { rel = was, href = v.href .. "/" .. was }, reason = reason })
      end
    end
    meeting.members[m.key] = nil
    compact_order(meeting)
    if meeting.waiting then meeting.waiting[m.key] = nil end
  end
  M.member_leave = member_leave

  -- Ends a conversation: the invitation (if still running) completes with
  -- `reason`; the conversation is deleted.  quiet: the application is gone.
  local function conv_close(conv, reason, quiet)
    if conv.closed then return end
    local app = conv.app
    cancel_timers(conv)
    local inv = conv.inv
    if conv.member then
      member_leave(conv.meeting, conv.member)
    end
    conv.closed = true
    conv.state = "Disconnected"
    if not quiet then
      local failed_now = false
      if inv and not inv.done then
        inv.done = true
        failed_now = true
        inv.state = (reason == REASONS.canceled) and "Cancelled"
          or (reason == REASONS.declined) and "Declined" or "Failed"
        emit_comm(app, "completed", "onlineMeetingInvitation", inv.href, inv_resource(inv),
          { status = "Failure", reason = reason or REASONS.canceled })
      end
      emit_comm(app, "deleted", "conversation", conv.href, nil, { reason = (not failed_now) and reason or nil })
    elseif inv then
      inv.done = true
    end
    app.convs[conv.id] = nil
    -- An invitation record keeps its invitations only while one is ringing.
    local record = inv and inv.record
    if record then
      local ringing = false
      for _, other in ipairs(record.invs) do
        if not other.done then ringing = true end
      end
      if not ringing then record.invs = {} end
    end
  end
  M.conv_close = conv_close

  -- A connected conversation loses its meeting (ended, ejected): messaging
  -- and the conversation go Disconnected, then the conversation is deleted.
  local function conv_disconnect(conv, reason)
    if conv.closed then return end
    if conv.state == "Connected" then
      conv.state = "Disconnected"
      emit_conv(conv, "updated", { rel = "messaging", href = conv.href .. "/messaging" }, messaging_resource(conv))
      emit_conv_updated(conv)
    end
    conv_close(conv, reason)
  end

  -- The member is in: the join completes with the roster in place.
  local function conv_connected(conv)
    local app, meeting, me = conv.app, conv.meeting, conv.member
    local inv = conv.inv
    conv.state = "Connected"
    if meeting.waiting then meeting.waiting[me.key] = nil end
    emit_participant(conv, "added", me, true)
    for _, m in ipairs(roster(conv)) do
      if m ~= me then
        emit_participant(conv, "added", m, true)
      end
    end
    emit_conv(conv, "updated", { rel = "messaging", href = conv.href .. "/messaging" }, messaging_resource(conv))
    emit_conv_updated(conv)
    if inv and not inv.done then
      inv.done = true
      inv.state = "Connected"
      emit_comm(app, "completed", "onlineMeetingInvitation", inv.href, inv_resource(inv), { status = "Success" })
    end
    -- The others see the new member.
    for _, v in ipairs(viewers(meeting, conv)) do
      emit_participant(v, "added", me, true)
    end
  end

  -- Moves a member from the lobby into the meeting.
  local function admit(meeting, m)
    if meeting.members[m.key] ~= m or m.state ~= "lobby" then return false end
    for _, v in ipairs(viewers(meeting, m.conv)) do
      if is_leader(v) then
        emit_conv(v, "deleted", { rel = "participant", href = phref(v, m), title = m.name }, nil,
          { ["in"] = { rel = "lobby", href = v.href .. "/lobby" } })
      end
    end
    m.state = "in"
    local conv = m.conv
    if conv then
      cancel_timers(conv)
      emit_conv(conv, "deleted", { rel = "participant", href = phref(conv, m), title = m.name }, nil,
        { ["in"] = { rel = "lobby", href = conv.href .. "/lobby" } })
      conv_connected(conv)
    else
      for _, v in ipairs(viewers(meeting)) do
        emit_participant(v, "added", m, true)
      end
    end
    return true
  end
  M.admit = admit

  local function reject(meeting, m)
    if meeting.members[m.key] ~= m or m.state ~= "lobby" then return false end
    if m.conv then
      conv_close(m.conv, REASONS.denied)
    else
      member_leave(meeting, m)
    end
    return true
  end
  M.reject = reject

  -- A new member: in the lobby or straight in.  Tells leaders about lobby arrivals.
  local function member_enter(meeting, m, lobby)
    meeting.members[m.key] = m
    meeting.member_order[#meeting.member_order + 1] = m.key
    if lobby then
      m.state = "lobby"
      for _, v in ipairs(viewers(meeting, m.conv)) do
        if is_leader(v) then
          emit_participant(v, "added", m, true)
        end
      end
    else
      m.state = "in"
    end
  end

  -- Changes a member's role (Leader / Attendee): the others get `updated
  -- participant` with `in` leaders or attendees; a new leader sees the lobby.
  function M.set_role(meeting, m, role)
    if meeting.members[m.key] ~= m or m.role == role then return false end
    m.role = role
    if role == "Leader" then meeting.leaders[m.key] = true else meeting.leaders[m.key] = nil end
    if m.state ~= "in" then return true end
    for _, v in ipairs(viewers(meeting)) do
      emit_participant(v, "updated", m, true)
    end
    if m.conv and m.conv.state == "Connected" and role == "Leader" then
      for _, other in ipairs(roster(m.conv, "lobby")) do
        emit_participant(m.conv, "added", other, true)
      end
    end
    return true
  end

  -- A leader ejects a member: an application's conversation ends with
  -- REASONS.ejected; the others get `deleted participant`.
  function M.eject(meeting, m)
    if meeting.members[m.key] ~= m then return false end
    if m.conv then
      conv_disconnect(m.conv, REASONS.ejected)
    else
      member_leave(meeting, m)
    end
    return true
  end

  -- A participant types (control API): nil and a message if it is not in.
  function M.set_typing(meeting, key, on)
    local m = meeting.members[key]
    if not m or m.state ~= "in" then return nil, "no such participant in the meeting" end
    if on then typing_start(meeting, m) else typing_stop(meeting, m) end
    return true
  end

  -- A virtual participant (control API) joins.
  function M.virtual_join(meeting, m, lobby)
    member_enter(meeting, m, lobby)
    if not lobby then
      for _, v in ipairs(viewers(meeting)) do
        if v.member ~= m then emit_participant(v, "added", m, true) end
      end
    end
  end

  local function needs_lobby(meeting, m)
    if S.cfg["auto-admit"] or not meeting.lobby then return false end
    return not meeting.leaders[m.key]
  end
  M.needs_lobby = needs_lobby

  local function new_member(meeting, user, conv, display_name)
    return {
      key = user.username,
      uri = user.uri,
      name = display_name or user.name,
      anonymous = user.anonymous and true or false,
      role = meeting.leaders[user.username] and "Leader" or "Attendee",
      conv = conv,
    }
  end
  M.new_member = new_member

  -- The join's second step: lobby, or straight in.
  local function join_step(conv)
    local meeting, m = conv.meeting, conv.member
    if meeting.ended then
      conv_close(conv, REASONS.ended)
      return
    end
    if meeting.members[m.key] then
      -- The same user is already in through another endpoint: replace it.
      local old = meeting.members[m.key]
      if old.conv and old.conv ~= conv then
        conv_close(old.conv, REASONS.removed)
      else
        member_leave(meeting, old)
      end
    end
    if needs_lobby(meeting, m) then
      member_enter(meeting, m, true)
      conv.state = "InLobby"
      emit_participant(conv, "added", m, true)
      emit_conv_updated(conv)
      emit_comm(conv.app, "updated", "onlineMeetingInvitation", conv.inv.href, inv_resource(conv.inv))
      later(conv, S.cfg["lobby-timeout"], function()
        if m.state == "lobby" then
          conv_close(conv, REASONS.timeout)
        end
      end)
    else
      member_enter(meeting, m, false)
      conv_connected(conv)
    end
  end

  local function new_conv(app, meeting, subject, importance, threadId)
    app.conv_seq = app.conv_seq + 1
    local id = string.format("%x", app.conv_seq) .. host.random(2)
    local conv = {
      id = id,
      app = app,
      meeting = meeting,
      href = app.href .. "/communication/conversations/" .. id,
      state = "Connecting",
      subject = subject or meeting.subject,
      importance = importance or "Normal",
      threadId = threadId or meeting.thread,
      created = host.wallclock(),
      timers = {},
      messages = {},
      msg_seq = 0,
    }
    app.convs[id] = conv
    return conv
  end

  local function new_inv(app, conv, direction)
    app.inv_seq = app.inv_seq + 1
    local inv = {
      n = app.inv_seq,
      href = app.href .. "/communication/onlineMeetingInvitations/" .. app.inv_seq,
      conv = conv,
      direction = direction,
      state = "Connecting",
      importance = conv.importance,
      subject = conv.subject,
      threadId = conv.threadId,
    }
    app.invs[inv.n] = inv
    conv.inv = inv
    return inv
  end

  ---------------------------------------------------------------------------
  -- joinOnlineMeeting / startOnlineMeeting

  local IMPORTANCE = { Normal = true, Urgent = true, Emergency = true }

  local function join(ctx, app)
    local req = ctx.req
    if not S.has_scope(app.scopes, "Conversations.Initiate") then
      return S.err(ctx, 403, "Forbidden", nil, "The token lacks the Conversations.Initiate scope.")
    end
    local input, e = S.input(ctx, true)
    if not input then return table.unpack(e) end
    local f = function(name)
      local v = S.field(input, name)
      if v == nil then v = req.query[name] end
      return v
    end
    local uri, subject, importance = f("onlineMeetingUri"), f("subject"), f("importance")
    local threadId, operationId, anonName = f("threadId"), f("operationId"), f("anonymousDisplayName")
    local function bad(msg)
      return S.err(ctx, 400, "BadRequest", "ParameterValidationFailure", msg)
    end
    for name, v in pairs({ onlineMeetingUri = uri, subject = subject, importance = importance, threadId = threadId,
      operationId = operationId, anonymousDisplayName = anonName }) do
      if v ~= nil and type(v) ~= "string" then
        return bad(name .. " must be a string.")
      end
    end
    if subject and utf8.len(subject) and utf8.len(subject) > 250 then
      return bad("The subject exceeds the maximum length of 250 characters.")
    end
    if operationId and #operationId > 50 then
      return bad("The operationId exceeds the maximum length of 50 characters.")
    end
    if importance and not IMPORTANCE[importance] then
      return bad("importance must be Normal, Urgent or Emergency.")
    end
    if anonName and not app.anonymous then
      return bad("anonymousDisplayName is only for anonymous users.")
    end
    if app.anonymous and (not anonName or anonName == "") then
      return bad("anonymousDisplayName is required for anonymous users.")
    end
    if anonName and utf8.len(anonName) and utf8.len(anonName) > 250 then
      return bad("The anonymousDisplayName exceeds the maximum length of 250 characters.")
    end
    local meeting
    if uri == "adhoc" or uri == nil or uri == "" then
      if app.anonymous then
        return S.err(ctx, 403, "Forbidden", "AnonymousNotAllowed", "Anonymous users cannot start a meeting.")
      end
      meeting = S.add_meeting({ organizer = app.user.username, subject = subject or "", lobby = true })
    else
      meeting = S.find_meeting(uri)
      if not meeting then
        return S.err(ctx, 404, "NotFound", "DestinationNotFound", "The meeting could not be found.")
      end
      if app.anonymous and meeting.id ~= app.meeting_id then
        return S.err(ctx, 403, "Forbidden", nil,
          "The target conference URI does not match the conference URI provisioned in anonymous web ticket.")
      end
    end
    for _, c in pairs(app.convs) do
      if c.meeting == meeting and not c.closed then
        return S.err(ctx, 409, "Conflict", "AlreadyExists", "The application is already in this meeting.")
      end
    end
    local conv = new_conv(app, meeting, subject, importance, threadId)
    local inv = new_inv(app, conv, "Outgoing")
    inv.operationId = operationId
    inv.anonymousDisplayName = anonName
    local me = new_member(meeting, app.user, conv, anonName)
    conv.member = me
    inv.from = me
    inv.to = meeting.uri
    emit_comm(app, "started", "onlineMeetingInvitation", inv.href, inv_resource(inv))
    emit_comm(app, "added", "conversation", conv.href, conv_resource(conv))
    later(conv, step_delay(), function()
      if meeting.ended then
        conv_close(conv, REASONS.notfound)
      else
        join_step(conv)
      end
    end)
    return S.created(ctx, inv.href)
  end

  ---------------------------------------------------------------------------
  -- incoming: another participant invites a user (control API)

  -- Returns the invitation record, or nil and a message.
  function M.invite(meeting, from_key, to_username, message)
    if meeting.ended then return nil, "the meeting has ended" end
    local from = meeting.members[from_key]
    if not from then
      local u = S.users[from_key]
      if not u then return nil, "unknown user " .. tostring(from_key) end
      from = new_member(meeting, u, nil)
      member_enter(meeting, from, false)
      for _, v in ipairs(viewers(meeting)) do
        emit_participant(v, "added", from, true)
      end
    end
    local targets = {}
    for app in pairs(S.user_apps[to_username] or {}) do
      if not app.deleted and app.available and S.has_scope(app.scopes, "Conversations.Receive") then
        targets[#targets + 1] = app
      end
    end
    if #targets == 0 then return nil, to_username .. " has no available application" end
    table.sort(targets, function(a, b) return tonumber(a.id) < tonumber(b.id) end)
    S.invite_seq = (S.invite_seq or 0) + 1
    local record = { id = S.invite_seq, meeting = meeting.id, from = from.key, to = to_username,
      state = "Ringing", invs = {} }
    S.invitations = S.invitations or {}
    S.invitations[record.id] = record
    for _, app in ipairs(targets) do
      local conv = new_conv(app, meeting, meeting.subject, "Normal", meeting.thread)
      conv.state = "Incoming"
      local inv = new_inv(app, conv, "Incoming")
      inv.from = from
      inv.to = app.user.uri
      inv.message = message
      inv.record = record
      record.invs[#record.invs + 1] = inv
      emit_comm(app, "started", "onlineMeetingInvitation", inv.href, inv_resource(inv))
      emit_comm(app, "added", "conversation", conv.href, conv_resource(conv))
      later(conv, S.cfg["invite-timeout"], function()
        if not inv.done then
          record.state = "NoAnswer"
          conv_close(conv, REASONS.timeout)
        end
      end)
    end
    return record
  end

  local function accept(ctx, app, inv)
    if not S.has_scope(app.scopes, "Conversations.Receive") then
      return S.err(ctx, 403, "Forbidden", nil, "The token lacks the Conversations.Receive scope.")
    end
    local conv, meeting = inv.conv, inv.conv.meeting
    if meeting.ended then
      conv_close(conv, REASONS.ended)
      return S.no_content(ctx)
    end
    local record = inv.record
    record.state = "Accepted"
    for _, other in ipairs(record.invs) do
      if other ~= inv and not other.done then
        conv_close(other.conv, REASONS.elsewhere)
      end
    end
    local me = new_member(meeting, app.user, conv)
    conv.member = me
    conv.state = "Connecting"
    cancel_timers(conv)
    later(conv, step_delay(), function()
      if meeting.ended then
        conv_close(conv, REASONS.ended)
        return
      end
      local old = meeting.members[me.key]
      if old then
        if old.conv then conv_close(old.conv, REASONS.removed) else member_leave(meeting, old) end
      end
      member_enter(meeting, me, false)
      conv_connected(conv)
    end)
    return S.no_content(ctx)
  end

  local function decline(ctx, app, inv)
    if not S.has_scope(app.scopes, "Conversations.Receive") then
      return S.err(ctx, 403, "Forbidden", nil, "The token lacks the Conversations.Receive scope.")
    end
    local input, e = S.input(ctx, true)
    if not input then return table.unpack(e) end
    local why = S.field(input, "reason")
    if why ~= nil and why ~= "Local" and why ~= "Global" and why ~= "Unknown" then
      return S.err(ctx, 400, "BadRequest", "ParameterValidationFailure", "reason must be Local, Global or Unknown.")
    end
    local record = inv.record
    local all_declined = true
    for _, other in ipairs(record.invs) do
      if other ~= inv and not other.done then all_declined = false end
    end
    if all_declined or why == "Global" then
      record.state = "Declined"
      record.reason = why or "Local"
    end
    conv_close(inv.conv, REASONS.declined)
    return S.no_content(ctx)
  end

  ---------------------------------------------------------------------------
  -- messaging

  local function deliver_message(meeting, from, text, html, except)
    for _, v in ipairs(viewers(meeting, except)) do
      v.msg_seq = v.msg_seq + 1
      local msg = { href = v.href .. "/messaging/messages/" .. v.msg_seq, direction = "Incoming",
        time = host.wallclock(), from = from, text = text, html = html }
      v.messages[v.msg_seq] = msg
      emit_conv(v, "completed", { rel = "message", href = msg.href }, message_resource(v, msg), { status = "Success" })
    end
  end

  -- The control API: a participant (virtual or not) says something.
  function M.say(meeting, from_key, text, html)
    local from = meeting.members[from_key]
    if not from or from.state ~= "in" then return nil, "no such participant in the meeting" end
    typing_stop(meeting, from)
    deliver_message(meeting, from, text, html, from.conv)
    return true
  end

  local function strip_html(s)
    return (s:gsub("<[^>]*>", ""):gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("&quot;", '"'):gsub("&amp;", "&"))
  end
  M.strip_html = strip_html

  local function send_message(ctx, conv)
    local req = ctx.req
    local app = conv.app
    if not S.has_scope(app.scopes, "Conversations.Initiate") then
      return S.err(ctx, 403, "Forbidden", nil, "The token lacks the Conversations.Initiate scope.")
    end
    if conv.state ~= "Connected" then
      return S.err(ctx, 409, "Conflict", nil, "The conversation is not connected.")
    end
    if req.too_large then
      return S.err(ctx, 413, "EntityTooLarge", nil, "The request is too large.")
    end
    local ct = (req.headers["content-type"] or ""):lower()
    local text, html
    if ct:find("^text/plain") then
      text = fmt.clean(req.body)
    elseif ct:find("^text/html") then
      html = fmt.clean(req.body)
      text = strip_html(html)
    else
      return S.err(ctx, 415, "UnsupportedMediaType", nil, "sendMessage takes text/plain or text/html.")
    end
    local opid = req.query.operationId
    if opid and #opid > 50 then
      return S.err(ctx, 400, "BadRequest", "ParameterValidationFailure", "The operationId exceeds 50 characters.")
    end
    conv.msg_seq = conv.msg_seq + 1
    local msg = { href = conv.href .. "/messaging/messages/" .. conv.msg_seq, direction = "Outgoing",
      time = host.wallclock(), from = conv.member, text = text, html = html, operationId = opid }
    conv.messages[conv.msg_seq] = msg
    emit_conv(conv, "started", { rel = "message", href = msg.href }, message_resource(conv, msg))
    later(conv, 0, function()
      emit_conv(conv, "completed", { rel = "message", href = msg.href }, message_resource(conv, msg),
        { status = "Success" })
      typing_stop(conv.meeting, conv.member)
      deliver_message(conv.meeting, conv.member, text, html, conv)
    end)
    return S.created(ctx, msg.href)
  end

  ---------------------------------------------------------------------------
  -- routes under <app>/communication

  -- lobby embeds its participants (lobby_ref); attendees, leaders and
  -- participants link to them (attendees_ref, leaders_ref).
  local function collection(ctx, conv, rel, which)
    local res = fmt.resource(rel, conv.href .. "/" .. rel)
    local list = {}
    for _, m in ipairs(roster(conv, which)) do
      if rel == "lobby" then
        list[#list + 1] = participant_resource(conv, m)
      else
        list[#list + 1] = { href = phref(conv, m), title = m.name }
      end
    end
    if rel == "lobby" then
      res:embed_list("participant", list)
    else
      res:link_list("participant", list)
    end
    return S.send(ctx, 200, res)
  end

  local function conv_route(ctx, conv, rest)
    local m = ctx.req.method
    local meeting = conv.meeting
    if rest == "" then
      if m == "GET" then return S.send(ctx, 200, conv_resource(conv)) end
      if m == "DELETE" then
        conv_close(conv, conv.inv and not conv.inv.done and REASONS.canceled or nil)
        return S.no_content(ctx)
      end
      return S.method_not_allowed(ctx, "GET, DELETE")
    end
    if rest == "/participants" or rest == "/lobby" or rest == "/attendees" or rest == "/leaders" then
      if m ~= "GET" then return S.method_not_allowed(ctx, "GET") end
      local rel = rest:sub(2)
      return collection(ctx, conv, rel, rel ~= "participants" and rel or nil)
    end
    if rest == "/participants/typingParticipants" then
      if m ~= "GET" then return S.method_not_allowed(ctx, "GET") end
      local list = {}
      for _, x in ipairs(roster(conv)) do
        local t = meeting.typing[x.key]
        if t and t.member == x and x ~= conv.member then
          list[#list + 1] = { href = phref(conv, x), title = x.name }
        end
      end
      return S.send(ctx, 200, fmt.resource("typingParticipants", conv.href .. rest):link_list("participant", list))
    end
    local key, action = rest:match("^/participants/([^/]+)(.*)$")
    if key then
      local target = meeting.members[key]
      if not target or not visible(conv, target) then return S.not_found(ctx) end
      if action == "" then
        if m ~= "GET" then return S.method_not_allowed(ctx, "GET") end
        return S.send(ctx, 200, participant_resource(conv, target))
      elseif action == "/admit" or action == "/reject" then
        if m ~= "POST" then return S.method_not_allowed(ctx, "POST") end
        if not is_leader(conv) then
          return S.err(ctx, 403, "Forbidden", nil, "Only leaders can admit or reject lobby participants.")
        end
        if target.state ~= "lobby" then
          return S.err(ctx, 409, "Conflict", nil, "The participant is not in the lobby.")
        end
        if action == "/admit" then admit(meeting, target) else reject(meeting, target) end
        return S.no_content(ctx)
      elseif action == "/eject" or action == "/promote" or action == "/demote" then
        if m ~= "POST" then return S.method_not_allowed(ctx, "POST") end
        if not is_leader(conv) then
          return S.err(ctx, 403, "Forbidden", nil, "Only leaders can eject, promote or demote participants.")
        end
        if target == conv.member or target.state ~= "in" then
          return S.err(ctx, 409, "Conflict", nil, "The participant is not an other participant in the meeting.")
        end
        if action == "/eject" then
          M.eject(meeting, target)
        else
          local role = action == "/promote" and "Leader" or "Attendee"
          if target.role == role then
            return S.err(ctx, 409, "Conflict", nil, "The participant is already " .. role:lower() .. ".")
          end
          M.set_role(meeting, target, role)
        end
        return S.no_content(ctx)
      end
      return S.not_found(ctx)
    end
    if rest == "/messaging" then
      if m ~= "GET" then return S.method_not_allowed(ctx, "GET") end
      return S.send(ctx, 200, messaging_resource(conv))
    elseif rest == "/messaging/messages" then
      if m ~= "POST" then return S.method_not_allowed(ctx, "POST") end
      return send_message(ctx, conv)
    elseif rest == "/messaging/stopMessaging" then
      if m ~= "POST" then return S.method_not_allowed(ctx, "POST") end
      return S.no_content(ctx)
    elseif rest == "/messaging/setIsTyping" then
      if m ~= "POST" then return S.method_not_allowed(ctx, "POST") end
      local app = conv.app
      if not S.has_scope(app.scopes, "Conversations.Initiate")
          and not S.has_scope(app.scopes, "Conversations.Receive") then
        return S.err(ctx, 403, "Forbidden", nil, "The token lacks the Conversations.Initiate and Receive scopes.")
      end
      if conv.state ~= "Connected" or not conv.member or conv.member.state ~= "in" then
        return S.err(ctx, 409, "Conflict", nil, "The conversation is not connected.")
      end
      typing_start(meeting, conv.member)
      return S.no_content(ctx)
    elseif rest:match("^/messaging/messages/%d+$") then
      if m ~= "GET" then return S.method_not_allowed(ctx, "GET") end
      local msg = conv.messages[tonumber(rest:match("(%d+)$"))]
      if not msg then return S.not_found(ctx) end
      return S.send(ctx, 200, message_resource(conv, msg))
    elseif rest == "/onlineMeeting" then
      if m ~= "GET" then return S.method_not_allowed(ctx, "GET") end
      local org = S.users[meeting.organizer]
      return S.send(ctx, 200, fmt.resource("onlineMeeting", conv.href .. "/onlineMeeting")
        :prop("onlineMeetingUri", meeting.uri)
        :prop("onlineMeetingId", meeting.id)
        :prop("subject", meeting.subject)
        :prop("organizerUri", "sip:" .. meeting.organizer)
        :prop("organizerName", org and org.name or meeting.organizer)
        :prop("lobbyBypassForPhoneUsers", "Disabled")
        :prop("automaticLeaderAssignment", "Disabled")
        :link("conversation", conv.href))
    end
    return S.not_found(ctx)
  end

  function M.route(ctx, app, rest)
    local m = ctx.req.method
    if rest == "/onlineMeetingInvitations" then
      if m ~= "POST" then return S.method_not_allowed(ctx, "POST") end
      return join(ctx, app)
    end
    local n, action = rest:match("^/onlineMeetingInvitations/(%d+)(.*)$")
    if n then
      local inv = app.invs[tonumber(n)]
      if not inv then return S.not_found(ctx) end
      if action == "" then
        if m ~= "GET" then return S.method_not_allowed(ctx, "GET") end
        return S.send(ctx, 200, inv_resource(inv))
      end
      if m ~= "POST" then return S.method_not_allowed(ctx, "POST") end
      local incoming = inv.direction == "Incoming"
      if (action == "/accept" or action == "/decline") and incoming
          or action == "/cancel" and not incoming then
        if inv.done then
          return S.err(ctx, 409, "Conflict", nil, "The invitation has already completed.")
        end
        if action == "/accept" then return accept(ctx, app, inv) end
        if action == "/decline" then return decline(ctx, app, inv) end
        conv_close(inv.conv, REASONS.canceled)
        return S.no_content(ctx)
      end
      return S.not_found(ctx)
    end
    if rest == "/conversations" then
      if m ~= "GET" then return S.method_not_allowed(ctx, "GET") end
      local list = {}
      local ids = {}
      for id in pairs(app.convs) do ids[#ids + 1] = id end
      table.sort(ids)
      for _, id in ipairs(ids) do
        list[#list + 1] = { href = app.convs[id].href }
      end
      return S.send(ctx, 200, fmt.resource("conversations", app.href .. "/communication/conversations")
        :link_list("conversation", list))
    end
    local cid, crest = rest:match("^/conversations/([^/]+)(.*)$")
    if cid then
      local conv = app.convs[cid]
      if not conv then return S.not_found(ctx) end
      return conv_route(ctx, conv, crest)
    end
    return S.not_found(ctx)
  end

  -- The application is gone (deleted, expired, forgotten or reset for resume).
  function M.app_gone(app)
    for _, conv in pairs(app.convs) do
      conv_close(conv, nil, true)
    end
    app.convs = {}
    app.invs = {}
  end

  function M.end_meeting(meeting)
    if meeting.ended then return end
    meeting.ended = true
    local convs = {}
    for _, key in ipairs(meeting.member_order) do
      local m = meeting.members[key]
      if m and m.conv then convs[#convs + 1] = m.conv end
    end
    -- Invitations still ringing for this meeting fail too.
    for _, app in pairs(S.apps) do
      for _, c in pairs(app.convs) do
        if c.meeting == meeting and not c.member then convs[#convs + 1] = c end
      end
    end
    for _, conv in ipairs(convs) do
      conv_disconnect(conv, REASONS.ended)
    end
    for _, t in pairs(meeting.typing) do S.cancel(t.timer) end
    meeting.typing = {}
    meeting.members = {}
    meeting.member_order = {}
  end

  return M
end
