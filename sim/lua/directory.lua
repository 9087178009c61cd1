-- ucwa-sim: the directory: users (names, passwords, token scopes, limits)
-- and the meetings it starts with, from --directory FILE or built in.
--
-- A user record: { username=, password=, name=, uri=, scopes=, max_apps= }
-- (username lowercased, without "sip:"); other modules read these fields.
local cjson = require "cjson.safe"

local M = {}

M.ALL_SCOPES = { "Conversations.Initiate", "Conversations.Receive", "Contacts.ReadWrite",
  "User.ReadWrite", "Meetings.ReadWrite" }

local users = {}
local anon_scopes = { "Conversations.Initiate", "Conversations.Receive" }

local BUILT_IN = {
  users = {
    { username = "alice@contoso.com", name = "Alice Adams" },
    { username = "bob@contoso.com", name = "Bob Brown" },
    { username = "bot@contoso.com", name = "Meeting Bot" },
  },
  meetings = {
    { id = "DEMO1", organizer = "alice@contoso.com", subject = "Demo meeting", lobby = true },
  },
}

-- "SIP:Bob@Contoso.com" -> "bob@contoso.com"; nil for a non-string.
function M.normalize(name)
  if type(name) ~= "string" then return nil end
  return (name:lower():gsub("^sip:", ""))
end

-- Adds (or replaces) a user from { username, password?, name?, scopes?,
-- max_apps? }; returns the record, or nil and a message.
function M.add(u)
  local username = type(u) == "table" and M.normalize(u.username)
  if not username or username == "" then return nil, "a user needs a username" end
  local local_part = username:match("^([^@]+)") or username
  local rec = {
    username = username,
    password = u.password or "password",
    name = u.name or (local_part:sub(1, 1):upper() .. local_part:sub(2)),
    uri = "sip:" .. username,
    scopes = u.scopes or M.ALL_SCOPES,
    max_apps = u.max_apps,
  }
  users[username] = rec
  return rec
end

function M.user(username)
  return users[M.normalize(username)]
end

-- Every user, by name: { {username=, name=} ... } (the console's list).
function M.list()
  local list = {}
  for name, u in pairs(users) do list[#list + 1] = { username = name, name = u.name } end
  table.sort(list, function(a, b) return a.username < b.username end)
  return list
end

-- The scopes of anonymous meeting tokens.
function M.anonymous_scopes()
  return anon_scopes
end

function M.has_scope(scopes, want)
  for _, s in ipairs(scopes or {}) do
    if s == want then return true end
  end
  return false
end

-- Loads the directory (path, or nil for the built-in one).  Returns its
-- meeting definitions, or nil and a one-line message.
function M.load(path)
  local d = BUILT_IN
  if path then
    local f, err = io.open(path, "rb")
    if not f then return nil, "cannot read --directory file: " .. tostring(err) end
    local text = f:read("a")
    f:close()
    local derr
    d, derr = cjson.decode(text)
    if type(d) ~= "table" then return nil, "--directory file " .. path .. " is not JSON: " .. tostring(derr) end
  end
  for _, u in ipairs(d.users or {}) do
    local ok, err = M.add(u)
    if not ok then return nil, "--directory file: " .. err end
  end
  if d.anonymous and d.anonymous.scopes then
    anon_scopes = d.anonymous.scopes
  end
  return d.meetings or {}
end

return M
