-- ucwa-sim: planted links (/_sim/plants), for trust specs: the next
-- answers of a kind carry a link that points to another host (a hostile
-- one) or to plain http://, so that a client spec can show that nothing
-- secret is sent there.  Each plant is armed for `count` answers.
--
-- Kinds (`link`): next (an event batch's next or resume link), sender (a
-- batch's conversation sender href), conversation / message (an event whose
-- link is one), challenge (a 401's MsRtcOAuth href), user (the root's user
-- link), applications (the user resource's applications link), messaging
-- (a connected messaging resource's sendMessage, setIsTyping and
-- stopMessaging links), contact (a contact in a people answer: search,
-- contact lists, groups), batch (the application's batch link),
-- myOnlineMeeting (a scheduled meeting's self link, in the answers to
-- schedule, list and read).  `to`: a
-- host name of the topology, "http" (the same host over plain HTTP: its
-- plain-HTTP listener when it has one, else its own port), or an origin
-- "scheme://host:port".  Filters: `app` (an application id) for the batch
-- kinds, `host` (a host name) for the others.
local hosts = require "hosts"

local M = {}

M.KINDS = { next = "batch", sender = "batch", conversation = "batch", message = "batch",
  challenge = "host", user = "host", applications = "host", messaging = "host",
  contact = "host", batch = "host", myOnlineMeeting = "host" }

local armed = {} -- { link=, to=, app=, host=, count= }, in arming order

-- Arms a plant from the control API's body; returns it, or nil and a message.
function M.plant(t)
  if not M.KINDS[t.link] then
    return nil, "link must be next, sender, conversation, message, challenge, user, applications, messaging,"
      .. " contact, batch or myOnlineMeeting"
  end
  local to = t.to
  if type(to) ~= "string" or not (to == "http" or hosts.get(to) or to:match("^https?://[^/]+$")) then
    return nil, "to must be a host name of the topology, \"http\" or an origin scheme://host:port"
  end
  local count = tonumber(t.count or 1)
  if not count or count < 1 or count ~= math.floor(count) then return nil, "count must be a whole number, 1 or more" end
  if t.host ~= nil and not hosts.get(t.host) then return nil, "no host " .. tostring(t.host) end
  local p = { link = t.link, to = hosts.get(to) and hosts.get(to).name or to, count = count,
    app = t.app ~= nil and tostring(t.app) or nil, host = t.host and hosts.get(t.host).name or nil }
  armed[#armed + 1] = p
  return p
end

function M.clear()
  armed = {}
end

-- The armed plants, for the control API.
function M.describe()
  return armed
end

-- The index of the first plant for `kind` on `host` (or `app`), or nil.
local function find(kind, host, app)
  for i, p in ipairs(armed) do
    if p.link == kind and (p.host == nil or p.host == host.name) and (p.app == nil or (app and p.app == app.id)) then
      return i
    end
  end
end

-- Uses up one answer of plant i; returns the origin its links point to
-- (from `host`, where the link would have pointed).
local function use(i, host)
  local p = armed[i]
  p.count = p.count - 1
  if p.count <= 0 then table.remove(armed, i) end
  if p.to == "http" then
    return "http://" .. host.name .. ":" .. (host.http_port or host.port)
  end
  local h = hosts.get(p.to)
  return h and h.base or p.to
end

local function path_of(href)
  return (href:gsub("^%a[%w+.-]*://[^/]*", ""))
end

-- `href` of an answer of `kind` from `host`, planted if a plant is armed.
function M.href(kind, href, host)
  if #armed == 0 then return href end
  local i = find(kind, host)
  if not i then return href end
  return use(i, host) .. path_of(href)
end

-- The first event of `batch` whose link rel is `rel`: sender, index.
local function first_event(batch, rel)
  for _, s in ipairs(batch.senders) do
    for j, ev in ipairs(s.events) do
      if ev.link.rel == rel then return s, j end
    end
  end
end

-- An event batch of `app` (events.lua), with the plants armed for it.
-- Rewrites the batch's own tables (built for this answer), copying events.
function M.batch(app, batch)
  if #armed == 0 then return batch end
  local host = app.host
  local i = find("next", host, app)
  if i then
    local origin = use(i, host)
    for _, l in ipairs(batch.links) do
      if l.rel == "next" or l.rel == "resume" then l.href = origin .. path_of(l.href) end
    end
  end
  i = find("sender", host, app)
  if i then
    for _, s in ipairs(batch.senders) do
      if s.rel == "conversation" then
        s.href = use(i, host) .. path_of(s.href)
        break
      end
    end
  end
  for _, rel in ipairs({ "conversation", "message" }) do
    i = find(rel, host, app)
    local s, j = first_event(batch, rel)
    if i and s then
      local ev = {}
      for k, v in pairs(s.events[j]) do ev[k] = v end
      ev.link = { rel = rel, href = use(i, host) .. path_of(ev.link.href), title = ev.link.title }
      s.events[j] = ev
    end
  end
  return batch
end

return M
