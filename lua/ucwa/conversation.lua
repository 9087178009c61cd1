--- Conversations, participants and messages: what a meeting bot does once in.
-- @module ucwa.conversation
local core = require "ucwa.core"
local async = require "ucwa.async"
local errors = require "ucwa.errors"
local resource = require "ucwa.resource"

local conversation = {}

local Conversation = resource.class("conversation")
local Participant = resource.class("participant")
local Message = resource.class("message", resource.Operation)
conversation.Conversation, conversation.Participant, conversation.Message = Conversation, Participant, Message

resource.register("conversation", Conversation)
resource.register("participant", Participant)
resource.register("localParticipant", Participant)
resource.register("message", Message)

---------------------------------------------------------------------------
-- Participants

for method, rel in pairs{ admit = "admit", reject = "reject", eject = "eject", promote = "promote",
                          demote = "demote" } do
  --- Lobby and roster actions, where the participant's links allow them. cb(true, err).
  Participant[method] = function(self, cb) return self:_post(rel, nil, cb) end
end

--- The participant's display name, or its SIP URI.
function Participant:display()
  return self.properties.name or self.properties.uri or tostring(self.href)
end

---------------------------------------------------------------------------
-- Conversation

function Conversation:_init()
  self._people = {}  -- participant href -> collection rel ("lobby", "attendees", "leaders") or true
end

-- GETs a collection link and returns its members as participant objects.
function Conversation:_collection(rel, cb)
  local client = self._client
  return async.call(client, cb, function(done)
    local href = self:link(rel)
    if not href then
      return done(nil, errors.new{ code = "NotFound", subcode = "NoLink",
                                   message = "conversation has no " .. rel .. " link" })
    end
    client:_send({ method = "GET", url = href }, function(model, err)
      if not model then return done(nil, err) end
      local out, seen = {}, {}
      local function add(m)
        local href_m = m.href and client:_absolute(m.href)
        if href_m and not seen[href_m] then
          seen[href_m] = true
          out[#out + 1] = client:_object(m, "participant")
        end
      end
      local emb = model.embedded and model.embedded.participant
      if emb then
        if emb.rel then emb = { emb } end
        for _, m in ipairs(emb) do add(m) end
      end
      local links = model.links and model.links.participant
      if links then
        if links.href then links = { links } end
        for _, l in ipairs(links) do add{ rel = "participant", href = l.href, properties = { name = l.title } } end
      end
      done(out)
    end)
  end)
end

--- Everyone in the conversation. cb(list, err).
function Conversation:participants(cb) return self:_collection("participants", cb) end
--- Who waits in the lobby (organiser and leader bots). cb(list, err).
function Conversation:lobby(cb) return self:_collection("lobby", cb) end
--- Attendees and leaders. cb(list, err).
function Conversation:attendees(cb) return self:_collection("attendees", cb) end
function Conversation:leaders(cb) return self:_collection("leaders", cb) end

-- The messaging modality resource, fetched when the event did not carry it.
function Conversation:_messaging(done)
  local m = rawget(self, "_messaging_model")
  if m then return done(m) end
  local href = self:link("messaging")
  if not href then
    return done(nil, errors.new{ code = "NotAllowed", subcode = "NoLink", message = "conversation has no messaging" })
  end
  self._client:_send({ method = "GET", url = href }, function(model, err)
    if not model then return done(nil, err) end
    self._messaging_model = model
    done(model)
  end)
end

local function link_of(model, rel)
  local l = model.links and model.links[rel]
  return l and l.href
end

--- Sends a message. opts.format = "html" sends HTML (when negotiated).
-- cb(message, err): message is an operation with status once delivered.
function Conversation:send(text, opts, cb)
  if type(opts) == "function" then opts, cb = nil, opts end
  if type(text) ~= "string" then error("bad argument #1 to 'send' (string expected)", 2) end
  opts = opts or {}
  local html = opts.format == "html"
  if opts.format ~= nil and opts.format ~= "html" and opts.format ~= "plain" then
    error("bad argument #2 to 'send' (format must be \"plain\" or \"html\")", 2)
  end
  local client = self._client
  return async.call(client, cb, function(done)
    self:_messaging(function(m, err)
      if not m then return done(nil, err) end
      local href = link_of(m, "sendMessage")
      if not href then
        return done(nil, errors.new{ code = "NotAllowed", subcode = "NoLink", message = "messaging is not connected" })
      end
      if html then
        local formats = m.properties and m.properties.negotiatedMessageFormats
        local ok = false
        for _, f in ipairs(type(formats) == "table" and formats or {}) do ok = ok or f == "Html" end
        if not ok then
          return done(nil, errors.new{ code = "NotAllowed", subcode = "HtmlNotNegotiated",
                                       message = "the server did not negotiate Html messages" })
        end
      end
      local msg = resource.new(client, { rel = "message", properties = { direction = "Outgoing" } })
      client:_keep_pending(msg)
      client:_send({ method = "POST", url = href, raw_body = text,
                     content_type = html and "text/html;charset=utf-8" or "text/plain;charset=utf-8" },
        function(model, e, resp)
          if e then
            client:_forget_pending(msg)
            msg:_fail(e)
            return done(nil, e)
          end
          if type(model) == "table" then msg:_update(model) end
          msg.href = msg.href or (resp and resp.headers.location)
          client:_register(msg)
          done(msg)
        end)
    end)
  end)
end

--- Tells the others that the bot is typing. cb(true, err).
function Conversation:set_typing(cb)
  local client = self._client
  return async.call(client, cb, function(done)
    self:_messaging(function(m, err)
      if not m then return done(nil, err) end
      local href = link_of(m, "setIsTyping")
      if not href then
        return done(nil, errors.new{ code = "NotAllowed", subcode = "NoLink", message = "messaging is not connected" })
      end
      client:_send({ method = "POST", url = href }, function(_, e) done(e == nil or nil, e) end)
    end)
  end)
end

--- Leaves the conversation: stops messaging and removes the conversation. cb(true, err).
function Conversation:leave(cb)
  local client = self._client
  return async.call(client, cb, function(done)
    client:_send({ method = "DELETE", url = self.href }, function(_, err)
      if err and err.status ~= 404 then return done(nil, err) end
      done(true)
    end)
  end)
end

---------------------------------------------------------------------------
-- Messages

--- Decodes a data: URL (RFC 2397), base64 or percent-encoded. Returns text, media type.
function conversation.decode_data_url(href)
  return core.data_url(href)
end

local function message_view(msg, participant)
  local props = msg.properties
  local text, html
  local plain = msg:link("plainMessage")
  if plain then text = core.data_url(plain) end
  local h = msg:link("htmlMessage")
  if h then html = core.data_url(h) end
  local time = props.timeStamp and core.date and core.date(props.timeStamp)
  return {
    text = text or html, html = html, direction = props.direction, time = time,
    sender = participant, message = msg, href = msg.href,
  }
end

---------------------------------------------------------------------------
-- Dispatch of the events a conversation sends

local PARTICIPANT_EVENT = { added = "participant_added", updated = "participant_updated",
                            deleted = "participant_removed" }

-- One event whose sender is this conversation.
function Conversation:_sender_event(ev)
  local client = self._client
  local link = ev.link or {}
  local rel = link.rel
  local collection = ev["in"] and ev["in"].rel
  if rel == "participant" or rel == "localParticipant" then
    local model = ev.resource or { rel = rel, href = link.href, properties = { name = link.title } }
    local p = client:_object(model, "participant")
    if collection == "typingParticipants" then
      self:_emit("typing", p, ev.type ~= "deleted")
      return
    end
    if ev.type == "deleted" then
      if self._people[client:_absolute(p.href)] == nil and collection == nil then return end
      self._people[client:_absolute(p.href)] = nil
    else
      self._people[client:_absolute(p.href)] = collection or true
      p.collection = collection or rawget(p, "collection")
    end
    self:_emit(PARTICIPANT_EVENT[ev.type] or "participant_updated", p, collection)
    if collection == "lobby" and ev.type == "added" then self:_emit("lobby", p) end
  elseif rel == "messaging" then
    if ev.resource then self._messaging_model = ev.resource else self._messaging_model = nil end
    self:_emit("messaging", ev.type)
  elseif rel == "message" then
    local model = ev.resource or { rel = "message", href = link.href }
    local msg = client:_object(model, "message")
    local dir = msg.properties.direction
    if dir == "Incoming" then
      if rawget(msg, "_delivered") then return end
      msg._delivered = true
      local from = msg:link("participant") or msg:link("from")
      local sender = from and client._objects[client:_absolute(from)]
      local view = message_view(msg, sender)
      view.from = sender and sender:display() or (msg.links.participant and msg.links.participant.title)
      self:_emit("message", view)
    else
      msg:_event(ev)
    end
  else
    self:_emit("event", ev)
  end
end

-- Events about the conversation itself (sender: communication).
function Conversation:_event(ev)
  if ev.resource then self:_update(ev.resource) end
  if ev.type == "deleted" then self:_emit("deleted") else self:_emit("updated") end
end

return conversation
