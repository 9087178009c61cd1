-- ucwa-sim: participants: the members of a meeting (meetings.lua) as each
-- application's conversation sees them (participant_ref.md, lobby_ref.md,
-- attendees_ref.md, leaders_ref.md, typingParticipants_ref.md).
--
-- A conversation sees everyone who is in, itself, and, if it leads, the
-- lobby.  Every change to the membership (arrivals, departures, roles,
-- typing) is told as `participant` events to the conversations that can
-- see it, from each conversation's own sender.
local config = require "config"
local console = require "console"
local directory = require "directory"
local events = require "events"
local fmt = require "formats"
local meetings = require "meetings"
local timers = require "timers"

local M = {}

-- meeting -> { member -> timer } while that member types, made on first use.
local typing = setmetatable({}, { __index = function(t, meeting)
  local v = {}
  t[meeting] = v
  return v
end })

---------------------------------------------------------------------------
-- the meeting as one conversation sees it

local function phref(conv, member)
  return conv.href .. "/participants/" .. member.key
end
M.href = phref

-- The collection a member is in: lobby, leaders or attendees.
local function in_rel(member)
  if member.state == "lobby" then return "lobby" end
  if member.role == "Leader" then return "leaders" end
  return "attendees"
end

-- Does the conversation's own member lead the meeting (and is it in)?
local function is_leader(conv)
  return conv.member and conv.member.role == "Leader" and conv.member.state == "in"
end

-- Can the conversation see member m?  Leaders see the lobby, everyone else
-- only who is in, and itself.
local function visible(conv, m)
  if not meetings.present(conv.meeting, m) then return false end
  if m.conv == conv or m.state == "in" then return true end
  return m.state == "lobby" and is_leader(conv)
end

-- The members the conversation sees, in join order; `which`: only those in
-- that collection.
local function roster(conv, which)
  local list = {}
  for _, m in ipairs(meetings.members(conv.meeting)) do
    if visible(conv, m) and (which == nil or in_rel(m) == which) then
      list[#list + 1] = m
    end
  end
  return list
end

-- The connected conversations of the meeting's members, but `except`.
local function viewers(meeting, except)
  local list = {}
  for _, m in ipairs(meetings.members(meeting)) do
    if m.conv and m.conv ~= except and m.state == "in" and m.conv.state == "Connected" then
      list[#list + 1] = m.conv
    end
  end
  return list
end

M.is_leader = is_leader
M.visible = visible
M.roster = roster
M.viewers = viewers

---------------------------------------------------------------------------
-- resources

function M.resource(conv, m)
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

-- lobby embeds its participants (lobby_ref); attendees, leaders and
-- participants link to them (attendees_ref, leaders_ref).
function M.collection(conv, rel, which)
  local res = fmt.resource(rel, conv.href .. "/" .. rel)
  local list = {}
  for _, m in ipairs(roster(conv, which)) do
    if rel == "lobby" then
      list[#list + 1] = M.resource(conv, m)
    else
      list[#list + 1] = { href = phref(conv, m), title = m.name }
    end
  end
  if rel == "lobby" then
    return res:embed_list("participant", list)
  end
  return res:link_list("participant", list)
end

-- Who types now, but the conversation's own member.
function M.typing_resource(conv)
  local list = {}
  for _, x in ipairs(roster(conv)) do
    if M.is_typing(conv.meeting, x) and x ~= conv.member then
      list[#list + 1] = { href = phref(conv, x), title = x.name }
    end
  end
  return fmt.resource("typingParticipants", conv.href .. "/participants/typingParticipants")
    :link_list("participant", list)
end

---------------------------------------------------------------------------
-- events

-- An event from the conversation's own sender (participants, messaging).
local function emit_conv(conv, type_, link, res, extra)
  local ev = { type = type_, link = link, resource = res }
  for k, v in pairs(extra or {}) do ev[k] = v end
  events.emit(conv.app, "high", "conversation", conv.href, ev)
end
M.conversation_event = emit_conv

-- `added`/`updated`/`deleted participant` m, in the collection m is in now.
local function participant_event(conv, type_, m, embed, reason)
  emit_conv(conv, type_, { rel = "participant", href = phref(conv, m), title = m.name },
    embed and M.resource(conv, m) or nil,
    { ["in"] = { rel = in_rel(m), href = conv.href .. "/" .. in_rel(m) }, reason = reason })
end
M.event = participant_event

-- The same participant event (embedded) to every viewer but `except`.
local function tell_viewers(meeting, except, type_, m)
  for _, v in ipairs(viewers(meeting, except)) do
    participant_event(v, type_, m, true)
  end
end
M.tell_viewers = tell_viewers

---------------------------------------------------------------------------
-- typing: the others get `added participant` in typingParticipants, and
-- `deleted` after --typing-timeout without another setIsTyping, when the
-- participant sends a message or when it leaves.

function M.is_typing(meeting, m)
  return typing[meeting][m] ~= nil
end

local function typing_event(meeting, m, type_)
  for _, v in ipairs(viewers(meeting, m.conv)) do
    emit_conv(v, type_, { rel = "participant", href = phref(v, m), title = m.name }, nil,
      { ["in"] = { rel = "typingParticipants", href = v.href .. "/participants/typingParticipants" } })
  end
end

-- m stops typing (if it was).
local function typing_stop(meeting, m)
  local list = typing[meeting]
  if not list[m] then return end
  timers.cancel(list[m])
  list[m] = nil
  console.changed("meeting", meeting)
  if meetings.present(meeting, m) and m.state == "in" then
    typing_event(meeting, m, "deleted")
  end
end

-- m is typing (again): the timer restarts.
local function typing_start(meeting, m)
  local list = typing[meeting]
  if list[m] then
    timers.cancel(list[m])
  else
    typing_event(meeting, m, "added")
  end
  list[m] = timers.after(config.get("typing-timeout"), function() typing_stop(meeting, m) end)
  console.changed("meeting", meeting)
end

M.typing_start = typing_start
M.typing_stop = typing_stop

-- The meeting has ended: nobody types any more.
function M.typing_over(meeting)
  for _, t in pairs(typing[meeting]) do timers.cancel(t) end
  typing[meeting] = nil
  console.changed("meeting", meeting)
end

-- A participant types or stops (control API): nil and a message if it is not in.
function M.set_typing(meeting, key, on)
  local m = meetings.member(meeting, key)
  if not m or m.state ~= "in" then return nil, "no such participant in the meeting" end
  if on then typing_start(meeting, m) else typing_stop(meeting, m) end
  return true
end

---------------------------------------------------------------------------
-- membership

-- A new member: in the lobby (leaders are told) or straight in (nobody is
-- told here: see conversations.connected and virtual_join).
local function enter(meeting, m, lobby)
  meetings.enter(meeting, m, lobby and "lobby" or "in")
  if lobby then
    for _, v in ipairs(viewers(meeting, m.conv)) do
      if is_leader(v) then participant_event(v, "added", m, true) end
    end
  end
end
M.enter = enter

-- Removes a member from its meeting, telling the others who could see it.
local function leave(meeting, m, reason)
  if not meetings.present(meeting, m) then return end
  typing_stop(meeting, m)
  for _, v in ipairs(viewers(meeting, m.conv)) do
    if m.state == "in" or (m.state == "lobby" and is_leader(v)) then
      participant_event(v, "deleted", m, false, reason)
    end
  end
  meetings.leave(meeting, m)
end
M.leave = leave

-- A virtual participant (control API) joins, in the lobby or straight in.
function M.virtual_join(meeting, m, lobby)
  enter(meeting, m, lobby)
  if not lobby then tell_viewers(meeting, nil, "added", m) end
end

-- The member `key` of the meeting; a directory user who is not there joins
-- first, as a virtual participant, straight in.  nil and a message if there
-- is no such user.
function M.bring_in(meeting, key)
  local m = meetings.member(meeting, key)
  if m then return m end
  local u = directory.user(key)
  if not u then return nil, "unknown user " .. tostring(key) end
  m = meetings.new_member(meeting, u, nil)
  M.virtual_join(meeting, m, false)
  return m
end

-- Changes a member's role (Leader / Attendee): everyone in gets `updated
-- participant` in leaders or attendees; a new leader sees the lobby.
function M.set_role(meeting, m, role)
  if not meetings.present(meeting, m) or m.role == role then return false end
  meetings.set_role(meeting, m, role)
  if m.state ~= "in" then return true end
  tell_viewers(meeting, nil, "updated", m)
  if m.conv and m.conv.state == "Connected" and role == "Leader" then
    for _, other in ipairs(roster(m.conv, "lobby")) do
      participant_event(m.conv, "added", other, true)
    end
  end
  return true
end


return M
