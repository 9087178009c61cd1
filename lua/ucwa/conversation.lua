--- Conversations, participants and messages: what a meeting bot does once in.
--
-- A conversation object comes from `inv:conversation()` or from the event
-- channel. It keeps a roster of the participants it has heard of (who is in
-- the `lobby`, the `attendees` and the `leaders`), turns the conversation's
-- events into callbacks, and sends messages.
--
--    conv:on("message", function(conv, msg) print(msg.from, msg.text) end)
--    conv:on("lobby", function(conv, p) p:admit() end)
--    conv:send("Hello, room!")
--
-- Callbacks of a conversation (`conv:on(name, fn)`):
--
-- * `participant_added`, `participant_updated`, `participant_removed`:
--   `fn(conv, participant, collection)`, where `collection` is the rel of the
--   event's `in` link (`"lobby"`, `"attendees"`, `"leaders"`) or nil. A
--   participant already known that shows up in another collection (promoted,
--   demoted) is `participant_updated`; one admitted from the lobby is removed
--   from `lobby`, then added to `attendees` or `leaders`, as the server says.
-- * `lobby`: `fn(conv, participant)` when someone other than the bot arrives
--   in the lobby (seen by leaders only).
-- * `message`: `fn(conv, msg)` for each incoming message (a @{Message}).
-- * `typing`: `fn(conv, participant, typing)`, typing true or false.
-- * `messaging`: `fn(conv, messaging_model)` when the messaging modality
--   changes (connected, disconnected).
-- * `added`, `updated`, `deleted`: the conversation itself; `deleted` gets
--   `fn(conv, reason)` (a reason table or nil) when the conversation ends.
-- * `event`: `fn(conv, event)` for any other event the conversation sends.
-- @module ucwa.conversation
local core = require "ucwa.core"
local errors = require "ucwa.errors"
local messaging = require "ucwa.messaging"
local resource = require "ucwa.resource"
local util = require "ucwa.util"

local conversation = {}

local CONVERSATION_EVENTS = {
  participant_added = true, participant_updated = true, participant_removed = true, lobby = true,
  message = true, typing = true, messaging = true, added = true, updated = true, deleted = true, event = true,
}

local Conversation = resource.class("conversation", nil, CONVERSATION_EVENTS)
local Participant = resource.class("participant")
local Message = resource.class("message", resource.Operation)

conversation.Conversation, conversation.Participant, conversation.Message = Conversation, Participant, Message

resource.register("conversation", Conversation)
resource.register("participant", Participant)
resource.register("localParticipant", Participant)
resource.register("message", Message)

local function no_link(what, rel)
  return errors.new{ code = "NotAllowed", subcode = "NoLink", message = what .. " has no " .. rel .. " link now" }
end

--- Decodes a `data:` URL as UCWA sends message text: base64, or URL-encoded
-- (percent escapes, and `+` for a space as in form encoding). Returns the
-- text and the media type, or nil and a message.
-- @tparam string href
-- @treturn string text
-- @treturn string media type
function conversation.decode_data_url(href)
  if type(href) ~= "string" then error("bad argument #1 to 'decode_data_url' (string expected)", 2) end
  return core.data_url(href)
end

--- Plain text from HTML: tags dropped, the common entities decoded.
-- @tparam string html
-- @treturn string
function conversation.strip_html(html)
  local s = html:gsub("<[Bb][Rr]%s*/?>", "\n"):gsub("<[^>]*>", "")
  s = s:gsub("&#(%d+);", function(n) return utf8.char(tonumber(n)) end)
  s = s:gsub("&#[xX](%x+);", function(n) return utf8.char(tonumber(n, 16)) end)
  s = s:gsub("&nbsp;", " "):gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("&quot;", '"'):gsub("&apos;", "'")
  return (s:gsub("&amp;", "&"))
end

--- How many received messages a conversation keeps for @{Conversation:receive}
-- (the oldest go first).
conversation.INBOX = 256

--- A participant of a conversation.
-- Properties by name: `name`, `uri`, `role` (`Leader` or `Attendee`),
-- `inLobby`, `anonymous`, `organizer`, and `p["local"]` (true for the bot).
-- Fields: `collection`, the rel of the last `in` link seen for it (`lobby`,
-- `attendees`, `leaders`).
-- @type Participant

--- The participant's display name, or its SIP URI.
-- @treturn string
function Participant:display()
  return self.properties.name or self.properties.uri or tostring(self.href)
end

--- True for the bot's own participant (the `local` property).
-- @treturn boolean
function Participant:is_local()
  return self.properties["local"] == true
end

--- Admits a participant waiting in the lobby (leaders only). `cb(true, err)`.
-- @tparam[opt] function cb
function Participant:admit(cb) return self:_post("admit", nil, cb) end
--- Rejects a participant waiting in the lobby (leaders only). `cb(true, err)`.
-- @tparam[opt] function cb
function Participant:reject(cb) return self:_post("reject", nil, cb) end
--- Removes a participant from the meeting (where the `eject` link allows). `cb(true, err)`.
-- @tparam[opt] function cb
function Participant:eject(cb) return self:_post("eject", nil, cb) end
--- Makes an attendee a leader (where the `promote` link allows). `cb(true, err)`.
-- @tparam[opt] function cb
function Participant:promote(cb) return self:_post("promote", nil, cb) end
--- Makes a leader an attendee (where the `demote` link allows). `cb(true, err)`.
-- @tparam[opt] function cb
function Participant:demote(cb) return self:_post("demote", nil, cb) end

--- True when the participant's links allow `action` now ("admit", "eject" ...).
-- @tparam string action
-- @treturn boolean
function Participant:can(action)
  return self:link(action) ~= nil
end

-- The participant object for a link {href=, title=}: the known one, or a
-- new one that knows only its name (never overwrites what is known).
local function participant_for(session, rel, link, model)
  local registry = session.registry
  if model and model.href then return registry:object(model, "participant") end
  local href = link and link.href
  if not href then return nil end
  local known = registry:find(href)
  if known then
    if link.title and known.properties.name == nil then known.properties.name = link.title end
    return known
  end
  local p = resource.new(session, { rel = rel or "participant", href = href,
                                    properties = { name = link.title } }, "participant")
  registry:register(p)
  return p
end

--- A conversation (a meeting the bot is in, or joining).
-- Properties by name: `state` (`Connecting`, `InLobby`, `Connected`,
-- `Disconnected` ...), `subject`, `threadId`, `importance`,
-- `participantCount`, `activeModalities` ...
-- @type Conversation

function Conversation:_init()
  self._people = {}  -- absolute participant href -> participant (the roster heard from events)
  self._order = {}   -- arrival order of hrefs in _people
  self._inbox = { waiters = {} } -- messages for receive(), and the coroutines waiting in it
  self._session.registry:keep_conversation(self, true)
end

--- The participants the conversation's events have named so far, in order
-- of arrival, without a request. With `collection` ("lobby", "attendees",
-- "leaders"), only those in it.
-- @tparam[opt] string collection
-- @treturn {Participant,...}
function Conversation:roster(collection)
  local list = {}
  for _, href in ipairs(self._order) do
    local p = self._people[href]
    if p and (collection == nil or rawget(p, "collection") == collection) then list[#list + 1] = p end
  end
  return list
end

-- GETs a collection link and returns its members as participant objects.
function Conversation:_collection(rel, cb)
  local session = self._session
  return session.async:call(cb, function(done)
    local href = self:link(rel)
    if not href then return done(nil, no_link("conversation", rel)) end
    session:send({ method = "GET", url = href }, function(model, err)
      if not model then return done(nil, err) end
      if model == true then return done({}) end
      local out, seen = {}, {}
      local function add(p)
        local h = p and p.href and session:absolute(p.href)
        if h and not seen[h] then
          seen[h] = true
          out[#out + 1] = p
        end
      end
      local emb = model.embedded and model.embedded.participant
      if emb then
        if emb.rel or emb.href then emb = { emb } end
        for _, m in ipairs(emb) do add(participant_for(session, "participant", nil, m)) end
      end
      local links = model.links and model.links.participant
      if links then
        if links.href then links = { links } end
        for _, l in ipairs(links) do add(participant_for(session, "participant", l)) end
      end
      done(out)
    end)
  end)
end

--- Everyone in the conversation (a GET of `participants`). `cb(list, err)`.
-- @tparam[opt] function cb
function Conversation:participants(cb) return self:_collection("participants", cb) end
--- Who waits in the lobby (empty unless the bot is a leader). `cb(list, err)`.
-- @tparam[opt] function cb
function Conversation:lobby(cb) return self:_collection("lobby", cb) end
--- The attendees. `cb(list, err)`.
-- @tparam[opt] function cb
function Conversation:attendees(cb) return self:_collection("attendees", cb) end
--- The leaders. `cb(list, err)`.
-- @tparam[opt] function cb
function Conversation:leaders(cb) return self:_collection("leaders", cb) end

-- The messaging modality resource, fetched when no event carried it.
function Conversation:_messaging(done)
  local m = rawget(self, "_messaging_model")
  if m then return done(m) end
  local href = self:link("messaging")
  if not href then return done(nil, no_link("conversation", "messaging")) end
  self._session:send({ method = "GET", url = href }, function(model, err)
    if not model then return done(nil, err) end
    if model ~= true then self._messaging_model = model end
    done(model)
  end)
end

local function negotiated(m, format)
  local formats = m.properties and m.properties.negotiatedMessageFormats
  if type(formats) == "string" then formats = { formats } end
  for _, f in ipairs(type(formats) == "table" and formats or {}) do
    if f == format then return true end
  end
  return false
end

--- True when the server negotiated HTML messages for this conversation
-- (known once messaging is connected).
-- @treturn boolean
function Conversation:html_allowed()
  local m = rawget(self, "_messaging_model")
  return m ~= nil and negotiated(m, "Html")
end

--- Sends a message. `opts.format = "html"` sends `text` as HTML (only when
-- the server negotiated `Html`: else the call fails with `HtmlNotNegotiated`).
-- `cb(message, err)` once the server took it: `message` is a @{Message}
-- operation whose `completed` callback (and `status`, `reason`) says
-- whether it was delivered; `message:wait()` in a coroutine.
-- @tparam string text
-- @tparam[opt] table opts `{format = "plain"|"html", operationId = ...}`
-- @tparam[opt] function cb
function Conversation:send(text, opts, cb)
  if type(opts) == "function" then opts, cb = nil, opts end
  if type(text) ~= "string" then error("bad argument #1 to 'send' (string expected)", 2) end
  if opts ~= nil and type(opts) ~= "table" then error("bad argument #2 to 'send' (table expected)", 2) end
  opts = opts or {}
  if opts.format ~= nil and opts.format ~= "html" and opts.format ~= "plain" then
    error("bad argument #2 to 'send' (format must be \"plain\" or \"html\")", 2)
  end
  local html = opts.format == "html"
  local session = self._session
  return session.async:call(cb, function(done)
    self:_messaging(function(m, err)
      if not m then return done(nil, err) end
      local href = resource.link(m, "sendMessage")
      if not href then
        return done(nil, errors.new{ code = "NotAllowed", subcode = "NoLink", message = "messaging is not connected" })
      end
      if html and not negotiated(m, "Html") then
        return done(nil, errors.new{ code = "NotAllowed", subcode = "HtmlNotNegotiated",
                                     message = "the server did not negotiate Html messages" })
      end
      local opid = opts.operationId or util.operation_id()
      local msg = resource.new(session, { rel = "message",
        properties = { direction = "Outgoing", operationId = opid } })
      msg.text = html and conversation.strip_html(text) or text
      msg.html = html and text or nil
      msg.conversation = self
      session.registry:track(msg, opid)
      -- one POST at a time per conversation: servers post messages sent in
      -- parallel out of order
      self:_serially(function(release)
        session:send({ method = "POST", url = href, raw_body = text, query = { operationId = opid },
                       content_type = html and "text/html;charset=utf-8" or "text/plain;charset=utf-8" },
          function(model, e, resp)
            release()
            if e then
              session.registry:untrack(msg)
              msg:_fail(e)
              return done(nil, e)
            end
            if type(model) == "table" then msg:_update(model) end
            if not msg.href then
              msg.href = resp and resp.headers.location
              session.registry:register(msg)
            end
            done(msg)
          end)
      end)
    end)
  end)
end

-- Runs job(release) now, or once the jobs before it have called release.
function Conversation:_serially(job)
  local queue = rawget(self, "_send_queue")
  if queue then
    queue[#queue + 1] = job
    return
  end
  queue = {}
  self._send_queue = queue
  local function release()
    local nxt = table.remove(queue, 1)
    if nxt then return nxt(release) end
    self._send_queue = nil
  end
  job(release)
end

--- Tells the others the bot is typing (POST `setIsTyping`). `cb(true, err)`.
-- @tparam[opt] function cb
function Conversation:set_typing(cb)
  return self:_messaging_post("setIsTyping", cb)
end

-- POSTs to link `rel` of the conversation's messaging. cb(true, err).
function Conversation:_messaging_post(rel, cb)
  local session = self._session
  return session.async:call(cb, function(done)
    self:_messaging(function(m, err)
      if not m then return done(nil, err) end
      local href = resource.link(m, rel)
      if not href then return done(nil, no_link("messaging", rel)) end
      session:send({ method = "POST", url = href }, function(_, e)
        if e then return done(nil, e) end
        done(true)
      end)
    end)
  end)
end

--- Stops the conversation's messaging (stopMessaging; in a one-to-one
-- conversation, for both sides). `cb(true, err)`; the `messaging` callback
-- follows when the server says it is disconnected. See ucwa.messaging.
-- @tparam[opt] function cb
function Conversation:stop_messaging(cb)
  return self:_messaging_post("stopMessaging", cb)
end

--- Adds messaging to the conversation again (addMessaging): returns a
-- messagingInvitation at once, as `client:start_messaging` does.
-- `args`: `message` (a first message), `operationId`. `cb(inv, err)`.
-- @tparam[opt] table args
-- @tparam[opt] function cb
function Conversation:add_messaging(args, cb)
  return messaging.add(self, args, cb)
end

--- Leaves the meeting: DELETE of the conversation. `cb(true, err)`.
-- The `deleted` callback follows when the server confirms.
-- @tparam[opt] function cb
function Conversation:leave(cb)
  local session = self._session
  return session.async:call(cb, function(done)
    if not self.href then return done(nil, no_link("conversation", "self")) end
    session:send({ method = "DELETE", url = self.href, raw = true }, function(_, err)
      if err and err.status ~= 404 then return done(nil, err) end
      done(true)
    end)
  end)
end

local function decode_link(msg, rel)
  local href = msg:link(rel)
  if not href then return nil end
  local text, err = conversation.decode_data_url(href)
  if not text then
    msg._session:log("warn", "message " .. rel .. ": " .. tostring(err))
    return nil
  end
  -- Servers end messages with CRLF ("Hi+Tosh%0d%0a").
  return (text:gsub("[\r\n]+$", ""))
end

-- Fills text, html, time, from and sender from the message's representation.
function Conversation:_read_message(msg)
  local session = self._session
  local html = decode_link(msg, "htmlMessage")
  local text = decode_link(msg, "plainMessage") or decode_link(msg, "message")
  if html then msg.html = html end
  if text then msg.text = text elseif html then msg.text = conversation.strip_html(html) end
  local stamp = msg.properties.timeStamp
  if stamp ~= nil then
    msg.time = type(stamp) == "number" and stamp or (core.date(stamp))
  end
  -- the sender: its participant, else (messages outside meetings) its contact
  local plink = msg.links.participant or msg.links.contact
  if plink and plink[1] then plink = plink[1] end
  local sender = plink and (self._people[session:absolute(plink.href)]
                            or participant_for(session, "participant", plink))
  msg.sender = sender
  msg.from = (sender and sender:display()) or (plink and plink.title) or msg.from
  msg.conversation = self
end

-- An incoming message, once: its text decoded, then the "message" callbacks.
function Conversation:_incoming_message(msg)
  if rawget(msg, "_delivered") then return end
  msg._delivered = true
  self:_read_message(msg)
  self:_emit("message", msg)
  local inbox = self._inbox
  local waiter = table.remove(inbox.waiters, 1)
  if waiter then return waiter(msg) end
  inbox[#inbox + 1] = msg
  if #inbox > conversation.INBOX then table.remove(inbox, 1) end
end

--- In a coroutine started with `client:spawn`: returns the next incoming
-- message, waiting for it; nil and "deleted" once the conversation has ended.
-- Messages are kept in arrival order for `receive` (at most
-- `conversation.INBOX` of them), whether or not `message` callbacks ran.
-- @treturn Message
function Conversation:receive()
  local inbox = self._inbox
  if #inbox > 0 then return table.remove(inbox, 1) end
  if rawget(self, "_ended") then
    return nil, "deleted"
  end
  return self._session.async:wait("receive", function(wake)
    inbox.waiters[#inbox.waiters + 1] = wake
  end)
end

-- Dispatch of the events a conversation sends

local ROLE = { leaders = "Leader", attendees = "Attendee" }

-- A participant event (roster or typing).
function Conversation:_participant_event(ev, rel)
  local session = self._session
  local link = ev.link
  local collection = ev["in"] and ev["in"].rel
  local p = participant_for(session, rel, link, ev.resource)
  if not p then return end
  if collection == "typingParticipants" then
    return self:_emit("typing", p, ev.type ~= "deleted")
  end
  local href = session:absolute(p.href)
  local known = self._people[href]
  if not ev.resource and collection then
    -- No representation: what the collection tells.
    if ev.type == "deleted" then
      if collection == "lobby" then p.properties.inLobby = false end
    else
      p.properties.inLobby = collection == "lobby"
      p.properties.role = ROLE[collection] or p.properties.role
    end
  end
  if ev.type == "deleted" then
    if not known then return end
    local was = rawget(p, "collection")
    if collection and was and was ~= collection then return end -- a stale event
    self._people[href] = nil
    p.collection = nil
    for i, h in ipairs(self._order) do
      if h == href then table.remove(self._order, i); break end
    end
    return self:_emit("participant_removed", p, collection or was)
  end
  if collection then p.collection = collection end
  if known then
    return self:_emit("participant_updated", p, collection)
  end
  self._people[href] = p
  self._order[#self._order + 1] = href
  if ev.type == "updated" then
    self:_emit("participant_updated", p, collection)
  else
    self:_emit("participant_added", p, collection)
  end
  if collection == "lobby" and not p:is_local() then self:_emit("lobby", p) end
end

-- A message event: an outgoing one is an operation of the bot's; an
-- incoming one is delivered once.
function Conversation:_message_event(ev)
  local session = self._session
  local registry = session.registry
  local link = ev.link or {}
  local res = ev.resource
  local msg = registry:find(link.href)
    or (res and res.properties and registry:operation(res.properties.operationId, link.href))
  if msg then
    if res then msg:_update(res) end
  elseif res then
    msg = registry:object(res, "message")
  elseif link.href then
    -- No representation: fetch it, then handle the event again.
    local href = link.href
    return session:send({ method = "GET", url = href }, function(model, err)
      if not model or model == true then
        return session:log("warn", "fetching message " .. href .. ": " .. tostring(err))
      end
      model.href = model.href or link.href
      ev.resource = model
      self:_message_event(ev)
    end)
  else
    return
  end
  if msg.properties.direction == "Incoming" then
    if ev.type == "completed" and ev.status == "Failure" then return end
    if ev.type == "completed" and rawget(msg, "status") == nil then
      msg.status, msg.reason = ev.status or "Success", ev.reason
    end
    return self:_incoming_message(msg)
  end
  if ev.type == "completed" and msg.text == nil then self:_read_message(msg) end
  msg:_event(ev)
end

--- Handles one event whose sender is this conversation (called by the client).
-- @local
function Conversation:_sender_event(ev)
  local rel = ev.link and ev.link.rel
  if rel == "participant" or rel == "localParticipant" then
    return self:_participant_event(ev, rel)
  elseif rel == "messaging" then
    if ev.resource then self._messaging_model = ev.resource else self._messaging_model = nil end
    return self:_emit("messaging", ev.resource)
  elseif rel == "message" then
    return self:_message_event(ev)
  end
  self:_emit("event", ev)
end

--- Handles an event about the conversation itself (sender: communication).
-- @local
function Conversation:_event(ev)
  if ev.resource then self:_update(ev.resource) end
  if ev.type == "deleted" then
    self.properties.state = "Disconnected"
    self.reason = ev.reason
    self._ended = true
    self._session.registry:keep_conversation(self, false)
    self:_emit("deleted", ev.reason)
    local waiters = self._inbox.waiters
    self._inbox.waiters = {}
    for _, wake in ipairs(waiters) do wake(nil, "deleted") end
  elseif ev.type == "added" or ev.type == "started" then
    self._session.registry:keep_conversation(self, true)
    self:_emit("added")
  else
    self:_emit("updated")
  end
end

--- A message, sent or received: an operation (events `started`,
-- `completed`; then `status` and `reason`; `msg:wait()` in a coroutine).
-- @type Message
-- @field text the plain text (from `plainMessage`, else the HTML without tags), trailing line breaks removed
-- @field html the HTML text, when it came (or was sent) as HTML
-- @field from the sender's display name
-- @field sender the sender, a @{Participant} (nil when unknown)
-- @field time seconds since the epoch, from `timeStamp`
-- @field direction `"Incoming"` or `"Outgoing"` (a property)
-- @field status `"Success"` or `"Failure"` once delivered
-- @field reason why it failed: `{code=, subcode=, message=}`
-- @field conversation the @{Conversation} it belongs to

return conversation
