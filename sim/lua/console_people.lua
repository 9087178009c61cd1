-- ucwa-sim: what the console's People panel shows (console.lua asks, the
-- page draws): each directory user's presence, and the one-to-one sessions
-- of instant messages (messaging.lua) as IMs, not as meetings.
local applications = require "applications"
local directory = require "directory"
local fmt = require "formats"
local messaging = require "messaging"
local presence = require "presence"

local M = {}

-- { username, name, availability, note, reachable } of a directory user
-- (reachable: an IM reaches an application of theirs, a bot's).
function M.person(username)
  local u = directory.user(username)
  local p = presence.state(username)
  return { username = username, name = u and u.name or username, availability = p.availability,
    note = p.note, reachable = #applications.available_for(username) > 0 }
end

-- Every directory user's presence, by user name.
function M.people()
  local list = fmt.array()
  for _, u in ipairs(directory.names()) do list[#list + 1] = M.person(u.username) end
  return list
end

-- An IM session as `meeting_view` (control.lua's view of a meeting: its
-- members, who types) shows it, with its two users and whether it rings.
function M.im(s, meeting_view)
  local v = meeting_view(s)
  v.users = fmt.array()
  for i, name in ipairs(s.users) do v.users[i] = M.person(name) end
  local present = 0
  for _, x in ipairs(v.members) do
    if x.state == "in" then present = present + 1 end
  end
  v.state = s.ended and "ended" or present < 2 and "ringing" or "connected"
  return v
end

-- Every IM session the simulator keeps, oldest first.
function M.ims(meeting_view)
  local list = fmt.array()
  for _, s in ipairs(messaging.sessions()) do list[#list + 1] = M.im(s, meeting_view) end
  return list
end

return M
