-- ucwa-sim: the control API under /_sim/ (JSON in, JSON out), for tests and
-- prototyping: scenarios (meetings, lobby, invitations, messages) and fault
-- injection.  sim/README.md documents every endpoint.
local cjson = require "cjson.safe"

return function(S)
  local host = S.host
  local C = {}

  local function reply(status, t)
    return S.json_reply(status, t or {})
  end

  local function fail(status, msg)
    return reply(status, { error = msg })
  end

  local function norm_user(u)
    if type(u) ~= "string" then return nil end
    return (u:lower():gsub("^sip:", ""))
  end

  local function app_info(app)
    local convs = 0
    for _ in pairs(app.convs) do convs = convs + 1 end
    return {
      id = app.id,
      href = app.href,
      user = app.user.username,
      anonymous = app.anonymous,
      available = app.available,
      next_ack = app.next_ack,
      unacked_batch = app.batch ~= nil,
      queued = S.queued(app),
      pget = app.pget ~= nil,
      conversations = convs,
      idle = host.now() - app.last_active,
    }
  end

  local function meeting_info(m)
    local members = {}
    for _, key in ipairs(m.member_order) do
      local x = m.members[key]
      if x then
        members[#members + 1] = { key = x.key, name = x.name, uri = x.uri, state = x.state, role = x.role,
          virtual = x.conv == nil, app = x.conv and x.conv.app.id or nil, anonymous = x.anonymous,
          typing = m.typing[key] ~= nil and m.typing[key].member == x }
      end
    end
    if #members == 0 then members = cjson.empty_array or {} end
    return { id = m.id, uri = m.uri, key = m.key, organizer = m.organizer, subject = m.subject,
      lobby = m.lobby, ended = m.ended, members = members }
  end

  local function state()
    local apps = {}
    local queued, pgets = 0, 0
    for _, id in ipairs(S.app_order) do
      local app = S.apps[id]
      if app then
        local info = app_info(app)
        apps[#apps + 1] = info
        queued = queued + info.queued
        if info.pget then pgets = pgets + 1 end
      end
    end
    -- keep the order list short once applications are gone
    if #S.app_order > 2 * (#apps + 16) then
      local ids = {}
      for _, a in ipairs(apps) do ids[#ids + 1] = a.id end
      S.app_order = ids
    end
    local meetings = {}
    for _, m in pairs(S.meetings) do
      meetings[#meetings + 1] = meeting_info(m)
    end
    table.sort(meetings, function(a, b) return a.id < b.id end)
    local tokens = 0
    for _ in pairs(S.tokens) do tokens = tokens + 1 end
    return {
      base = S.base,
      applications = #apps > 0 and apps or (cjson.empty_array or {}),
      application_count = #apps,
      pgets_held = pgets,
      suspended_requests = host.suspended(),
      connections = host.connections(),
      events_queued = queued,
      tokens = tokens,
      meetings = meetings,
      stats = S.stats,
      faults = { drop_pget = S.faults.drop_pget, fail = S.faults.fail, delay = S.faults.delay },
    }
  end

  local function body(ctx)
    local b = ctx.req.body
    if b == "" then return {} end
    local t = cjson.decode(b)
    if type(t) ~= "table" then return nil end
    return t
  end

  local function count_of(t, default)
    local n = tonumber(t.count or default)
    if not n or n < 0 or n ~= math.floor(n) then return nil end
    return n
  end

  local function synthetic(app, n, prio)
    for _ = 1, n do
      app.synthetic_seq = app.synthetic_seq + 1
      S.emit(app, prio, "me", app.href .. "/me", { type = "updated",
        link = { rel = "note", href = app.href .. "/me/note", title = tostring(app.synthetic_seq) } })
    end
  end

  local function app_action(app, action, t)
    if action == "forget" then
      S.app_delete(app, "The application resource does not exist.")
      return reply(200, { forgotten = app.id })
    elseif action == "resync" then
      S.force_resync(app)
      return reply(200, { resync = app.id })
    elseif action == "resume" then
      S.reset_transient(app)
      return reply(200, { resume = app.id })
    elseif action == "events" then
      local n = count_of(t, 1)
      if not n or n > 1000000 then return fail(400, "count must be a whole number up to 1000000") end
      local prio = t.priority or "high"
      if prio ~= "realtime" and prio ~= "high" and prio ~= "medium" and prio ~= "low" then
        return fail(400, "priority must be realtime, high, medium or low")
      end
      local first = app.synthetic_seq + 1
      synthetic(app, n, prio)
      -- released_at: when a waiting P-GET was handed the events (wall clock, s)
      return reply(200, { first = first, last = app.synthetic_seq, released_at = host.wall_seconds() })
    end
    return fail(404, "unknown application action " .. action)
  end

  local function member_key(m, t)
    local u = norm_user(t.user)
    if not u then return nil end
    if m.members[u] then return u end
    return nil
  end

  local function meeting_action(m, action, t)
    local meet = S.meet
    if action == "" then
      return reply(200, meeting_info(m))
    elseif action == "/end" then
      meet.end_meeting(m)
      return reply(200, meeting_info(m))
    elseif action == "/join" then
      local u = norm_user(t.user)
      if not u then return fail(400, "user is required") end
      if m.ended then return fail(409, "the meeting has ended") end
      if m.members[u] then return fail(409, u .. " is already in the meeting") end
      local rec = S.users[u]
        or { username = u, uri = "sip:" .. u, name = t.name or u, anonymous = t.anonymous ~= false }
      local member = meet.new_member(m, rec, nil, t.name)
      local lobby = meet.needs_lobby(m, member)
      if t.lobby ~= nil then lobby = t.lobby and true or false end
      meet.virtual_join(m, member, lobby)
      return reply(200, { key = member.key, state = member.state })
    elseif action == "/promote" or action == "/demote" then
      local k = member_key(m, t)
      if not k then return fail(404, "no such participant") end
      meet.set_role(m, m.members[k], action == "/promote" and "Leader" or "Attendee")
      return reply(200, { key = k, role = m.members[k].role })
    elseif action == "/leave" then
      local k = member_key(m, t)
      if not k then return fail(404, "no such participant") end
      local member = m.members[k]
      if member.conv then
        meet.conv_close(member.conv, meet.REASONS.removed)
      else
        meet.member_leave(m, member)
      end
      return reply(200, { left = k })
    elseif action == "/admit" or action == "/reject" then
      local keys = {}
      if t.user then
        local k = member_key(m, t)
        if not k or m.members[k].state ~= "lobby" then return fail(404, "no such participant in the lobby") end
        keys[1] = k
      else
        for _, k in ipairs(m.member_order) do
          if m.members[k] and m.members[k].state == "lobby" then keys[#keys + 1] = k end
        end
      end
      for _, k in ipairs(keys) do
        local member = m.members[k]
        if member then
          if action == "/admit" then meet.admit(m, member) else meet.reject(m, member) end
        end
      end
      local key = action == "/admit" and "admitted" or "rejected"
      return reply(200, { [key] = #keys > 0 and keys or (cjson.empty_array or {}) })
    elseif action == "/invite" then
      local to = norm_user(t.to)
      if not to then return fail(400, "to is required") end
      local from = norm_user(t.from) or m.organizer
      local record, err = meet.invite(m, from, to, t.message)
      if not record then return fail(409, err) end
      return reply(200, { invitation = record.id, state = record.state })
    elseif action == "/typing" then
      local from = norm_user(t.from) or m.organizer
      local on = t.typing ~= false
      local ok, err = meet.set_typing(m, from, on)
      if not ok then return fail(409, err) end
      return reply(200, { key = from, typing = on })
    elseif action == "/message" then
      local from = norm_user(t.from) or m.organizer
      if type(t.text) ~= "string" and type(t.html) ~= "string" then
        return fail(400, "text or html is required")
      end
      local text = t.text or meet.strip_html(t.html)
      local ok, err = meet.say(m, from, S.fmt.clean(text), t.html and S.fmt.clean(t.html) or nil)
      if not ok then return fail(409, err) end
      return reply(200, { sent = true })
    end
    return fail(404, "unknown meeting action")
  end

  local function faults(action, t)
    local f = S.faults
    if action == "drop-pget" then
      local n = count_of(t, 1)
      if not n then return fail(400, "count must be a whole number") end
      f.drop_pget = n
    elseif action == "fail" then
      local n = count_of(t, 1)
      local status = tonumber(t.status or 503)
      if not n or not status or status < 400 or status > 599 then
        return fail(400, "count must be a whole number, status 400..599")
      end
      f.fail = n > 0 and { count = n, status = math.floor(status), code = t.code or "ServiceFailure",
        subcode = t.subcode, match = t.match, retry_after = t.retry_after } or nil
    elseif action == "delay" then
      local n = count_of(t, 1)
      local secs = tonumber(t.seconds)
      if not n or not secs or secs < 0 then return fail(400, "count and seconds are required") end
      f.delay = n > 0 and { count = n, seconds = secs, match = t.match } or nil
    elseif action == "clear" then
      f.drop_pget, f.fail, f.delay = 0, nil, nil
    else
      return fail(404, "unknown fault " .. action)
    end
    return reply(200, { drop_pget = f.drop_pget, fail = f.fail, delay = f.delay })
  end

  -- Runs act(obj, ...) on the object `id` names in `map`, or answers 404.
  local function with(map, id, noun, act, ...)
    local obj = map[id]
    if not obj then return fail(404, "no " .. noun .. " " .. id) end
    return act(obj, ...)
  end

  function C.handle(ctx)
    local req = ctx.req
    local path, m = req.path, req.method
    local t = body(ctx)
    if not t then return fail(400, "the body must be a JSON object") end
    if path == "/_sim/state" then
      if m ~= "GET" then return fail(405, "GET only") end
      return reply(200, state())
    end
    if m ~= "POST" and m ~= "GET" then return fail(405, "GET or POST") end
    local id, action = path:match("^/_sim/apps/([^/]+)/(%a+)$")
    if id then
      return with(S.apps, id, "application", app_action, action, t)
    end
    if path == "/_sim/meetings" and m == "POST" then
      if type(t.organizer) ~= "string" then return fail(400, "organizer is required") end
      if t.id and S.meetings[t.id] then return fail(409, "meeting " .. t.id .. " exists") end
      local meeting = S.add_meeting(t)
      return reply(201, meeting_info(meeting))
    end
    local mid, maction = path:match("^/_sim/meetings/([^/]+)(.*)$")
    if mid then
      return with(S.meetings, mid, "meeting", meeting_action, maction, t)
    end
    local iid = path:match("^/_sim/invitations/(%d+)$")
    if iid then
      local r = S.invitations and S.invitations[tonumber(iid)]
      if not r then return fail(404, "no invitation " .. iid) end
      return reply(200, { id = r.id, state = r.state, reason = r.reason, from = r.from, to = r.to,
        meeting = r.meeting })
    end
    if path == "/_sim/events" and m == "POST" then
      -- synthetic events for every application (benchmarks)
      local n = count_of(t, 1)
      if not n or n > 1000000 then return fail(400, "count must be a whole number up to 1000000") end
      local apps = 0
      for _, app in pairs(S.apps) do
        synthetic(app, n, t.priority or "high")
        apps = apps + 1
      end
      return reply(200, { applications = apps, events = apps * n })
    end
    local fault = path:match("^/_sim/faults/([%a%-]+)$")
    if fault and m == "POST" then
      return faults(fault, t)
    end
    if path == "/_sim/tokens/expire" and m == "POST" then
      local n = 0
      local user = norm_user(t.user)
      for tok, rec in pairs(S.tokens) do
        if (t.token == nil and user == nil) or t.token == tok or (user and rec.identity.username == user) then
          rec.expires = host.now() - 1
          n = n + 1
        end
      end
      return reply(200, { expired = n })
    end
    if path == "/_sim/users" and m == "POST" then
      local u = norm_user(t.username)
      if not u then return fail(400, "username is required") end
      S.users[u] = { username = u, password = t.password or "password", name = t.name or u, uri = "sip:" .. u,
        scopes = t.scopes or S.ALL_SCOPES }
      return reply(201, { username = u })
    end
    return fail(404, "unknown control path " .. path)
  end

  return C
end
