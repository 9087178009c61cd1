--- The object registry of a session and the routing of event batches to it.
--
-- Path of an event: the event channel hands a parsed batch to
-- `Registry:dispatch`; each event goes to the client's `event` handlers,
-- then `Registry:route` finds its object (by href, by the operationId of an
-- operation the bot started, or the conversation that sent it) and calls the
-- object's `_event` (resource.lua and its classes), which fires the object's
-- callbacks. Events about an operation whose `201 Created` has not arrived
-- yet wait here until it is registered.
--
-- This module is the only reader of the registry's tables.
-- @module ucwa.dispatch
local errors = require "ucwa.errors"
local invitation = require "ucwa.invitation"
local resource = require "ucwa.resource"

local dispatch = {}

--- Operation rels whose events a bot's invitations receive.
dispatch.OPERATIONS = {}
for _, rel in ipairs(invitation.rels) do dispatch.OPERATIONS[rel] = true end

--- Routes of events about resources no object is registered under, by the
-- event's link rel: `fn(registry, event, sender)`. Modules add their own
-- (ucwa.people: a contact's contactPresence, contactNote, contactLocation).
dispatch.BY_REL = {}

--- Bounds on events kept for operations not known yet (a server can send
-- any number): this many operations, this many events each, this many
-- seconds old at most. What goes over is dropped and logged.
dispatch.EARLY_MAX, dispatch.EARLY_EVENTS, dispatch.EARLY_AGE = 64, 16, 60

--- Bounds on what events about unknown resources make the client do: GETs
-- of resources it hears of in flight at once (more wait for an event that
-- carries them), and conversations kept alive (beyond, they live only while
-- the bot holds them, and the error handler hears of it once).
dispatch.FETCH_MAX, dispatch.LIVE_MAX = 16, 1000

local Registry = {}

-- The registry's tables, made on first use: most bots of a big pool never
-- need most of them (six empty tables were ~0.4 KB a bot: issue 16).
--   objects       absolute href -> object (weak values)
--   pending       operations in flight, kept alive until they complete
--   by_operation  operationId -> operation started by the bot
--   early         absolute href -> events that came before the object was known
--   early_order   those hrefs, oldest first, with the time each came: { href, time }
--   live          conversations going on: kept alive while the server talks about them
local WEAK_VALUES = { __mode = "v" }
local LAZY = { objects = WEAK_VALUES, pending = false, by_operation = false, early = false, early_order = false,
               live = false }
Registry.__index = function(self, k)
  local m = Registry[k]
  if m ~= nil then return m end
  local mt = LAZY[k]
  if mt == nil then return nil end
  local t = mt and setmetatable({}, mt) or {}
  rawset(self, k, t)
  return t
end

--- A registry for `session` (which resolves hrefs, sends requests, logs,
-- and emits the client's events).
function dispatch.new(session)
  return setmetatable({
    session = session,
    n_live = 0,
    fetching = 0,        -- automatic GETs in flight
  }, Registry)
end

local function absolute(self, href)
  return href and (self.session:absolute(href))
end

--- The object known under `href`, or nil.
function Registry:find(href)
  local h = absolute(self, href)
  return h and self.objects[h]
end

--- Registers obj under its href, and replays events that came before it was known.
function Registry:register(obj)
  local href = absolute(self, obj.href)
  if not href then return end
  self.objects[href] = obj
  if self.pending[obj] then self:stored(obj, true) end -- its href is known now
  local early = self.early[href]
  if early then
    self.early[href] = nil
    for _, ev in ipairs(early) do obj:_event(ev) end
  end
end

--- The object for a model: the known one (updated) or a new one.
function Registry:object(model, rel)
  local obj = self:find(model.href)
  if obj then
    obj:_update(model)
    return obj
  end
  obj = resource.new(self.session, model, rel)
  self:register(obj)
  return obj
end

--- Keeps an operation in flight alive, and findable by its operationId.
function Registry:track(obj, operation_id)
  self.pending[obj] = true
  if operation_id then self.by_operation[operation_id] = obj end
  self:stored(obj, true)
end

-- Operations and conversations in flight go to the session's store, if any.
function Registry:stored(obj, on, conv)
  local d = self.session.durable
  if not d then return end
  if conv then d:conversation(obj, on) else d:operation(obj, on) end
end

--- Forgets an operation that completed.
function Registry:untrack(obj)
  if self.pending[obj] then self:stored(obj, false) end
  self.pending[obj] = nil
  local id = obj.properties.operationId
  if id and self.by_operation[id] == obj then self.by_operation[id] = nil end
end

--- The operation the bot started with this operationId, registered under
-- `href` (the event's link) when it did not know its href yet.
function Registry:operation(operation_id, href)
  local obj = operation_id and self.by_operation[operation_id]
  if obj and not obj.href and href then
    obj.href = href
    self:register(obj)
  end
  return obj
end

--- Completes every operation in flight with Failure and `reason`.
function Registry:fail_pending(reason)
  local pending = self.pending
  self.pending, self.by_operation, self.early, self.early_order = {}, {}, {}, {}
  for obj in pairs(pending) do obj:_fail(reason) end
end

--- Keeps a conversation alive (on) while it goes on, or lets it go.
function Registry:keep_conversation(conv, on)
  local live = self.live
  if on and not live[conv] then
    if self.n_live >= dispatch.LIVE_MAX then
      if not self.live_reported then
        self.live_reported = true
        self.session:report(errors.new{ code = "LimitExceeded", subcode = "TooManyConversations",
          message = "the server speaks of more than " .. dispatch.LIVE_MAX
            .. " conversations; the others live only while the bot holds them" })
      end
      return
    end
    self.n_live = self.n_live + 1
    live[conv] = true
    self:stored(conv, true, true)
  elseif not on and live[conv] then
    self.n_live = self.n_live - 1
    live[conv] = nil
    self:stored(conv, false, true)
  end
end

--- The conversations going on, in no particular order.
function Registry:conversations()
  local list = {}
  for conv in pairs(self.live) do list[#list + 1] = conv end
  return list
end

--- The server closed what it held (`why`: the application was created again,
-- "ApplicationNotFound", or the event channel resumed, "resume"): operations
-- in flight fail with `err` and conversations end.
function Registry:session_lost(why, err)
  self:fail_pending(err)
  for _, conv in ipairs(self:conversations()) do
    conv:_event{ type = "deleted", reason = errors.new{ code = "Gone", subcode = "SessionLost",
      message = "the conversation ended with the session (" .. why .. ")" } }
  end
end

--- Dispatches one parsed batch of the event channel.
function Registry:dispatch(batch)
  local links = batch.links or {}
  local session = self.session
  -- resume: the server closed what it held, so operations in flight cannot
  -- complete. resync: the channel went back to the first unacknowledged
  -- batch, nothing is lost; the bot is told all the same.
  if links.resume then
    self:session_lost("resume", errors.new{ code = "Gone", subcode = "EventChannelResumed",
      message = "the event channel was resumed; the server's state was reset" })
    session:emit("resumed", { reason = "resume" })
  elseif links.resync then
    session:emit("resumed", { reason = "resync" })
  end
  -- ipairs' walks, without a call per step: this is every event's path
  local senders = batch.senders or {}
  local i, sender = 1, senders[1]
  while sender ~= nil do
    local events = sender.events or {}
    local j, ev = 1, events[1]
    while ev ~= nil do
      session:emit("event", ev, sender)
      self:route(ev, sender)
      j = j + 1
      ev = events[j]
    end
    i = i + 1
    sender = senders[i]
  end
end

-- The object a bare link names: the known one, or a new one fetched in the background.
function Registry:object_for_link(rel, href)
  local obj = self:find(href)
  if obj then return obj end
  obj = self:object({ rel = rel, href = href }, rel)
  local session = self.session
  if self.fetching >= dispatch.FETCH_MAX then
    session:log("warn", "not fetching " .. href .. " now: " .. dispatch.FETCH_MAX .. " fetches in flight")
    return obj
  end
  self.fetching = self.fetching + 1
  obj:refresh(function(_, err)
    self.fetching = self.fetching - 1
    if err then session:log("warn", "fetching " .. href .. ": " .. tostring(err)) end
  end)
  return obj
end

--- Routes one event to its object.
function Registry:route(ev, sender)
  if sender.rel == "conversation" and sender.href then
    return self:object_for_link("conversation", sender.href):_sender_event(ev)
  end
  local link = ev.link or {}
  local href = absolute(self, link.href)
  local res = ev.resource
  local obj = (href and self.objects[href])
    or (res and res.properties and self:operation(res.properties.operationId, href))
  if obj then
    if obj._event then obj:_event(ev, sender) end
    return
  end
  local by_rel = dispatch.BY_REL[link.rel]
  if by_rel then return by_rel(self, ev, sender) end
  if link.rel == "conversation" and href then
    local conv = res and self:object(res, "conversation") or self:object_for_link("conversation", href)
    return conv:_event(ev)
  end
  if dispatch.OPERATIONS[link.rel] then
    local direction = res and res.properties and res.properties.direction
    if direction == "Incoming" and (ev.type == "started" or ev.type == "added") then
      return self:incoming(ev, href, link.rel)
    end
    if res == nil or direction == nil then
      -- An outgoing operation whose 201 has not arrived yet: keep it for later.
      self:keep_early(href, ev)
    end
  end
end

-- Keeps an event for an operation not known yet, within the bounds above.
function Registry:keep_early(href, ev)
  local now, order = os.time(), self.early_order
  -- forget the oldest: past the age limit, or to make room
  while order[1] and (now - order[1][2] > dispatch.EARLY_AGE
                      or (not self.early[href] and #order >= dispatch.EARLY_MAX)) do
    local old = table.remove(order, 1)
    if self.early[old[1]] then
      self.early[old[1]] = nil
      self.session:log("warn", "dropped events of " .. old[1] .. ": no operation of the bot's claimed them")
    end
  end
  local list = self.early[href]
  if not list then
    list = {}
    self.early[href] = list
    order[#order + 1] = { href, now }
  end
  if #list >= dispatch.EARLY_EVENTS then
    return self.session:log("warn", "dropped an event of " .. href .. ": too many before its operation was known")
  end
  list[#list + 1] = ev
end

--- How many operations have events waiting here, and how many events in all.
function Registry:early_count()
  local ops, events = 0, 0
  for _, list in pairs(self.early) do ops, events = ops + 1, events + #list end
  return ops, events
end

-- An incoming invitation: an object of its kind, then the "invitation" callbacks.
function Registry:incoming(ev, href, rel)
  local session = self.session
  local function deliver(model)
    local inv = resource.new(session, model, rel)
    inv.href = inv.href or href
    self:register(inv)
    self:track(inv)
    session:emit("invitation", inv)
    inv:_event(ev)
  end
  if ev.resource then return deliver(ev.resource) end
  session:send({ method = "GET", url = href }, function(model, err)
    if not model then return session:report(err) end
    deliver(model)
  end)
end

return dispatch
