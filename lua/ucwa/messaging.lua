--- Instant messages outside meetings: one-to-one conversations.
--
-- `client:start_messaging{to = "sip:..."}` starts a messagingInvitation
-- (startMessaging_ref.md): an invitation object with the same life as a
-- meeting's (`started`, `updated`, `completed`; then `status` and `reason`).
-- Once it completes with Success, `inv:conversation()` is the conversation,
-- where `conv:send`, `conv:on("message")`, `conv:set_typing` and
-- `conv:receive` work as in a meeting.
--
-- Incoming messagingInvitations reach the client's `invitation` handlers,
-- as meeting invitations do: `inv.rel` is `"messagingInvitation"` and
-- `inv.message` the first message, decoded. `inv:accept()` connects the
-- conversation, `inv:decline()` turns it down.
--
--    client:on("invitation", function(inv)
--      if inv.rel ~= "messagingInvitation" then return end
--      inv:accept(function() inv:conversation(function(conv) conv:send("You said: " .. inv.message) end) end)
--    end)
--
-- `conv:stop_messaging()` ends the messaging of a conversation,
-- `conv:add_messaging()` starts it again (a new messagingInvitation).
-- @module ucwa.messaging
local core = require "ucwa.core"
local errors = require "ucwa.errors"
local resource = require "ucwa.resource"

local messaging = {}

--- The importance values of an invitation (Importance_ref.md).
messaging.IMPORTANCE = { Normal = true, Urgent = true, Emergency = true }

--- The first message of an invitation as a `data:` URL, form-encoded as
-- servers send message text (`+` for a space; libcurl's escaping).
-- @string text
-- @treturn string
function messaging.data_url(text)
  local q = core.url_with_query("http://localhost/", { m = text })
  return "data:text/plain;charset=utf-8," .. q:match("%?m=(.*)$")
end

local function bad(what, msg, level)
  error("bad argument #1 to '" .. what .. "' (" .. msg .. ")", level + 1)
end

local STRINGS = { "to", "subject", "importance", "threadId", "operationId", "message" }

-- Checks the arguments of start_messaging / add_messaging: raises on
-- argument errors (types, `to`, importance), returns an error object for
-- the limits the reference states. `body`: the arguments, on their way to
-- be the request body (the message becomes its `message` link).
local function validate(body, what, needs_to)
  for _, k in ipairs(STRINGS) do
    if body[k] ~= nil and type(body[k]) ~= "string" then bad(what, k .. " must be a string", 3) end
  end
  for k in pairs(body) do
    local known = false
    for _, name in ipairs(STRINGS) do known = known or name == k end
    if not known then bad(what, "unknown field " .. tostring(k), 3) end
  end
  if needs_to then
    if body.to == nil then bad(what, "to is required: the sip: URI of the person", 3) end
    if not body.to:lower():match("^sip:[^@%s]+@[^@%s]+$") then
      bad(what, "to must be a sip: URI such as \"sip:alice@contoso.com\", got " .. string.format("%q", body.to), 3)
    end
  elseif body.to ~= nil or body.subject ~= nil or body.importance ~= nil or body.threadId ~= nil then
    bad(what, "only message and operationId may be given", 3)
  end
  if body.importance ~= nil and not messaging.IMPORTANCE[body.importance] then
    bad(what, "importance must be \"Normal\", \"Urgent\" or \"Emergency\", got "
      .. string.format("%q", body.importance), 3)
  end
  if body.message ~= nil and not utf8.len(body.message) then bad(what, "message is not valid UTF-8", 3) end
  local function too_long(k, max)
    local n = body[k] and utf8.len(body[k])
    if n and n > max then return errors.validation(k .. " is longer than " .. max .. " characters") end
  end
  local err = too_long("subject", 250) or too_long("operationId", 50)
  if body.message ~= nil then
    body._links = { message = { href = messaging.data_url(body.message) } }
    body.message = nil
  end
  return err
end

local function properties(body)
  return { to = body.to, subject = body.subject, importance = body.importance }
end

--- Starts a one-to-one conversation (client:start_messaging calls it).
-- @param client the ucwa.client
-- @tparam table args `{to =, message =, subject =, importance =, threadId =, operationId =}`
-- @tparam[opt] function cb `cb(inv, err)`
-- @return the messagingInvitation
function messaging.start(client, args, cb)
  if type(args) ~= "table" then bad("start_messaging", "table expected", 2) end
  if cb ~= nil and type(cb) ~= "function" then error("bad argument #2 to 'start_messaging' (function expected)", 2) end
  return client:_invite("startMessaging", args, cb, "start_messaging", {
    rel = "messagingInvitation",
    validate = function(body, _, what) return validate(body, what, true) end,
    properties = properties,
  })
end

-- The messaging link `rel` of a conversation: done(href, err).
local function messaging_link(conv, rel, done)
  conv:_messaging(function(m, err)
    if not m then return done(nil, err) end
    local href = resource.link(m, rel)
    if not href then
      return done(nil, errors.new{ code = "NotAllowed", subcode = "NoLink",
        message = "the conversation's messaging has no " .. rel .. " link now" })
    end
    done(href)
  end)
end

--- Adds messaging to a conversation that has none now (after
-- stop_messaging): a new messagingInvitation, returned at once as
-- start_messaging does. args: `message`, `operationId`.
-- @param conv the conversation
-- @tparam[opt] table args
-- @tparam[opt] function cb `cb(inv, err)`
-- @return the messagingInvitation
function messaging.add(conv, args, cb)
  if type(args) == "function" then args, cb = nil, args end
  if args ~= nil and type(args) ~= "table" then bad("add_messaging", "table expected", 2) end
  local session = conv._session
  return session.client:_invite("addMessaging", args or {}, cb, "add_messaging", {
    rel = "messagingInvitation",
    validate = function(body, _, what) return validate(body, what, false) end,
    properties = function() return {} end,
    resolve = function(go)
      -- the link of the messaging resource as it is now, not as it was cached
      conv._messaging_model = nil
      messaging_link(conv, "addMessaging", go)
    end,
  })
end

return messaging
