-- ucwa-sim: the meetings and who is in them.  A meeting is shared by every
-- application in it (each sees it through its own conversation, see
-- conversations.lua); this module holds the facts: the meeting's identity,
-- its members in join order, their state (lobby or in) and role, and
-- whether it has ended.  It sends no events.
--
-- Fields other modules read (and never write): meeting.id, .uri, .key,
-- .organizer, .subject, .thread, .ended; member.key (the username, or an
-- anonymous key), .uri, .name, .anonymous, .role ("Leader" | "Attendee"),
-- .state ("lobby" | "in"), .conv (the member's conversation, nil for a
-- virtual participant driven by the control API).
local host = require "ucwasim.host"
local config = require "config"
local console = require "console"
local directory = require "directory"

local M = {}

local by_id, by_uri = {}, {}

---------------------------------------------------------------------------
-- the registry

-- Adds a meeting from { id?, organizer, uri?, subject?, lobby?, anonymous?,
-- key?, leaders? }.  Returns it, or nil and a message.
function M.add(spec)
  local organizer = type(spec) == "table" and directory.normalize(spec.organizer)
  if not organizer then return nil, "a meeting needs an organizer" end
  local id = spec.id or ("ADHOC" .. host.random(4):upper())
  local m = {
    id = id,
    uri = spec.uri or ("sip:" .. organizer .. ";gruu;opaque=app:conf:focus:id:" .. id),
    organizer = organizer,
    subject = spec.subject or "",
    lobby = spec.lobby ~= false,
    anonymous = spec.anonymous ~= false,
    key = spec.key or id,
    thread = host.random(16),
    ended = false,
    leaders = { [organizer] = true },
    members = {}, -- key -> member
    order = {},   -- keys in join order
  }
  for _, l in ipairs(spec.leaders or {}) do
    m.leaders[directory.normalize(l)] = true
  end
  by_id[id] = m
  by_uri[m.uri:lower()] = m
  console.changed("meeting", m)
  return m
end

function M.get(id)
  return by_id[id]
end

-- "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:DEMO1" -> meeting
function M.find(uri)
  if type(uri) ~= "string" then return nil end
  return by_uri[uri:lower():gsub("%s", "")]
end

-- Every meeting, by id.
function M.list()
  local list = {}
  for _, m in pairs(by_id) do list[#list + 1] = m end
  table.sort(list, function(a, b) return a.id < b.id end)
  return list
end

-- May a guest with conference key `key` join (anonymous meeting grant)?
function M.admits_guest(m, key)
  return not m.ended and m.anonymous and key == m.key
end

---------------------------------------------------------------------------
-- members

-- A member for `user` (a directory record or an anonymous identity), not
-- yet in the meeting.  conv: its conversation, nil for a virtual one.
function M.new_member(m, user, conv, display_name)
  return {
    key = user.username,
    uri = user.uri,
    name = display_name or user.name,
    anonymous = user.anonymous and true or false,
    role = m.leaders[user.username] and "Leader" or "Attendee",
    conv = conv,
  }
end

-- The member with `key` now in the meeting (lobby or in), or nil.
function M.member(m, key)
  return m.members[key]
end

-- Is this very member (not another endpoint of the same user) present?
function M.present(m, member)
  return m.members[member.key] == member
end

-- The members present, in join order.
function M.members(m)
  local list = {}
  for _, key in ipairs(m.order) do
    local x = m.members[key]
    if x then list[#list + 1] = x end
  end
  return list
end

-- Does `member` wait in the lobby when it joins?
function M.needs_lobby(m, member)
  if config.get("auto-admit") or not m.lobby then return false end
  if m.lobby_rule then return m.lobby_rule(member) end -- a scheduled meeting's accessLevel (online_meetings.lua)
  return not m.leaders[member.key]
end

-- The member arrives, in `state` ("lobby" | "in").
function M.enter(m, member, state)
  m.members[member.key] = member
  m.order[#m.order + 1] = member.key
  member.state = state
  console.changed("meeting", m)
end

-- A lobby member is let in.
function M.seat(m, member)
  member.state = "in"
  console.changed("meeting", m)
end

function M.leave(m, member)
  if m.members[member.key] ~= member then return end
  m.members[member.key] = nil
  local order = {}
  for _, key in ipairs(m.order) do
    if m.members[key] then order[#order + 1] = key end
  end
  m.order = order
  console.changed("meeting", m)
end

function M.set_role(m, member, role)
  member.role = role
  m.leaders[member.key] = role == "Leader" or nil
  console.changed("meeting", m)
end

-- The meeting has ended: nobody can join any more.
function M.mark_ended(m)
  m.ended = true
  console.changed("meeting", m)
end

-- Everybody is gone (the end of an ended meeting).
function M.clear_members(m)
  m.members, m.order = {}, {}
  console.changed("meeting", m)
end

return M
