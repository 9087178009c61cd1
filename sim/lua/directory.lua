-- ucwa-sim: the directory: users (names, passwords, token scopes, limits)
-- and the meetings it starts with, from --directory FILE or built in.
--
-- A user record: { username=, password=, name=, uri=, scopes=, max_apps=,
-- company=, department=, title=, office=, phone=, groups= } (username
-- lowercased, without "sip:"); other modules read these fields.  groups:
-- { {name=, members={username ...}} ... }, the user's contact list by group
-- (default: one group, "Colleagues", of everyone else in the directory).
local cjson = require "cjson.safe"

local M = {}

M.ALL_SCOPES = { "Conversations.Initiate", "Conversations.Receive", "Contacts.ReadWrite",
  "User.ReadWrite", "Meetings.ReadWrite" }

local users = {}
local order = {} -- usernames in the order they were added
local anon_scopes = { "Conversations.Initiate", "Conversations.Receive" }

local BUILT_IN = {
  users = {
    { username = "alice@contoso.com", name = "Alice Adams", department = "Sales", title = "Account Manager",
      office = "1/1101", phone = "tel:+14255550101" },
    { username = "bob@contoso.com", name = "Bob Brown", department = "Engineering", title = "Engineer",
      office = "2/2107", phone = "tel:+14255550102" },
    { username = "bot@contoso.com", name = "Meeting Bot", department = "Engineering", title = "Bot",
      groups = { { name = "Team", members = { "alice@contoso.com", "bob@contoso.com" } } } },
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
    company = u.company or "Contoso",
    department = u.department,
    title = u.title,
    office = u.office,
    phone = u.phone,
    groups = u.groups,
  }
  if rec.groups ~= nil then
    local ok, err = M.check_groups(rec.groups)
    if not ok then return nil, err end
  end
  if not users[username] then order[#order + 1] = username end
  users[username] = rec
  return rec
end

function M.user(username)
  return users[M.normalize(username)]
end

-- Every user, in the order they were added.
function M.list()
  local list = {}
  for i, name in ipairs(order) do list[i] = users[name] end
  return list
end

local MAX_GROUPS, MAX_MEMBERS = 64, 1000

-- A `groups` value of a user: a list of { name = string, members = list of user names }.
function M.check_groups(groups)
  if type(groups) ~= "table" or #groups > MAX_GROUPS then
    return nil, "groups must be a list of at most " .. MAX_GROUPS .. " {name, members}"
  end
  for _, g in ipairs(groups) do
    if type(g) ~= "table" or type(g.name) ~= "string" or g.name == "" or type(g.members or {}) ~= "table"
        or #(g.members or {}) > MAX_MEMBERS then
      return nil, "each group needs a name and a list of members (at most " .. MAX_MEMBERS .. ")"
    end
    for _, m in ipairs(g.members or {}) do
      if type(m) ~= "string" then return nil, "group members are user names" end
    end
  end
  return true
end

-- The groups of a user's contact list: { {id=, name=, members = {record ...}} },
-- members that are not (or no longer) in the directory left out.
function M.groups_of(rec)
  local out = {}
  if rec.groups then
    for i, g in ipairs(rec.groups) do
      local members = {}
      for _, name in ipairs(g.members or {}) do
        local m = M.user(name)
        if m then members[#members + 1] = m end
      end
      out[i] = { id = tostring(i), name = g.name, members = members }
    end
  else
    local members = {}
    for _, u in ipairs(M.list()) do
      if u ~= rec then members[#members + 1] = u end
    end
    out[1] = { id = "1", name = "Colleagues", members = members }
  end
  return out
end

-- Every user's name and display name, sorted by name (the console's list).
function M.names()
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
