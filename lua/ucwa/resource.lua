--- Resource objects: a UCWA resource with its properties by name, callbacks
-- per event type, and link navigation. Classes (invitation, conversation ...)
-- derive from it. An object belongs to a session (session.lua), through which
-- it sends requests, finds other objects (`session.registry`) and runs the
-- bot's callbacks.
-- @module ucwa.resource
local emitter = require "ucwa.emitter"
local errors = require "ucwa.errors"

local resource = {}
local classes = {}

--- The href of link `rel` of a model or object (the first one of a
-- collection), or nil. The one link reader of the Lua layer.
-- @tparam table model
-- @string rel
-- @treturn string|nil
function resource.link(model, rel)
  local links = type(model) == "table" and model.links
  local l = links and links[rel]
  if l and l[1] then l = l[1] end
  return l and l.href
end

--- The href of link `rel` of the resource embedded as `emb` in a model
-- (`"self"`: the embedded resource's own href), or nil.
-- @tparam table model
-- @string emb
-- @string rel
-- @treturn string|nil
function resource.embedded_link(model, emb, rel)
  local e = model and model.embedded and model.embedded[emb]
  if not e then return nil end
  if rel == "self" then return e.href end
  return resource.link(e, rel)
end

local Resource = {}
resource.Resource = Resource

--- Makes a class whose instances find methods first, then properties by
-- name; `events` is the set of callback names `on` accepts (inherited from
-- the parent when nil).
function resource.class(name, parent, events)
  parent = parent or Resource
  local class = setmetatable({ __name = "ucwa." .. name }, { __index = parent })
  class.__index = function(self, key)
    local v = class[key]
    if v ~= nil then return v end
    local props = rawget(self, "properties")
    return props and props[key]
  end
  class.__tostring = function(self)
    return "ucwa." .. tostring(self.rel or name) .. "(" .. tostring(self.href) .. ")"
  end
  if events or not parent.events then
    emitter.install(class, name, events or { added = true, updated = true, deleted = true })
  end
  return class
end

--- Registers the class used for resources of a rel.
function resource.register(rel, class)
  classes[rel] = class
end

local Generic = resource.class("resource")

--- A new object for a parsed model, of the class registered for its rel.
function resource.new(session, model, rel)
  rel = rel or model.rel
  local class = classes[rel] or Generic
  local self = setmetatable({
    _session = session, rel = rel, href = model.href,
    properties = {}, links = {}, embedded = {},
  }, class)
  self:_update(model)
  if class._init then class._init(self) end
  return self
end

-- Takes the properties, links and embedded resources of a fresh representation.
function Resource:_update(model)
  if model.rel and not rawget(self, "rel") then self.rel = model.rel end
  if model.href then self.href = model.href end
  if model.properties then self.properties = model.properties end
  if model.links then self.links = model.links end
  if model.embedded then self.embedded = model.embedded end
end

-- Runs the handlers of `name` with (self, ...); their errors go to the
-- client's error path.
function Resource:_emit(name, ...)
  local session = self._session
  emitter.emit(self, name, session.call, self, ...)
end

--- Registers `fn(obj, ...)` for the event `name` of this object. Every
-- object has it: resources (`added`, `updated`, `deleted`), operations and
-- invitations (`started`, `updated`, `completed`), conversations (see
-- ucwa.conversation). A name the object does not have raises, listing the
-- ones it has. Returns the object.
-- @function Resource:on
-- @string name
-- @tparam function fn

--- Removes a handler registered with `on`. Returns the object.
-- @function Resource:off
-- @string name
-- @tparam function fn

--- The href of a link, or nil.
-- @string rel
function Resource:link(rel)
  return resource.link(self, rel)
end

--- PUTs the resource with `props` changed, with If-Match and the echo
-- property (see ucwa.update). cb(self, err); a 412 reads it again and reports.
-- @tparam table props
-- @tparam[opt] function cb
function Resource:update(props, cb)
  return require("ucwa.update").put(self, props, cb)
end

--- Fetches the resource again and updates this object. cb(self, err).
function Resource:refresh(cb)
  local session = self._session
  return session.async:call(cb, function(done)
    session:send({ method = "GET", url = self.href }, function(model, err, resp)
      if not model then return done(nil, err) end
      require("ucwa.update").remember_etag(self, resp)
      if model ~= true then self:_update(model) end
      done(self)
    end)
  end)
end

-- Follows link `rel`: the embedded resource when the event carried one,
-- else a GET. cb(object, err).
function Resource:_follow(rel, cb)
  local session = self._session
  local registry = session.registry
  return session.async:call(cb, function(done)
    local emb = self.embedded[rel]
    if emb and emb.rel then
      return done(registry:object(emb))
    end
    local href = self:link(rel)
    local known = href and registry:find(href)
    if known and next(known.links) then return done(known) end
    if not href then
      return done(nil, errors.new{ code = "NotFound", subcode = "NoLink",
        message = tostring(self.rel) .. " has no " .. rel .. " link" })
    end
    session:send({ method = "GET", url = href }, function(model, err)
      if not model then return done(nil, err) end
      if model == true then model = { rel = rel, href = href } end
      done(registry:object(model))
    end)
  end)
end

-- POSTs to link `rel` (with an optional body table). cb(true, err).
function Resource:_post(rel, body, cb, query)
  local session = self._session
  return session.async:call(cb, function(done)
    local href = self:link(rel)
    if not href then
      return done(nil, errors.new{ code = "NotAllowed", subcode = "NoLink",
        message = tostring(self.rel) .. " has no " .. rel .. " link now" })
    end
    session:send({ method = "POST", url = href, body = body, query = query }, function(_, err)
      if err then return done(nil, err) end
      done(true)
    end)
  end)
end

--- Operations (invitations, messages): started, updated, completed events;
-- after completion `status` is "Success" or "Failure" and `reason` says why.
local Operation = resource.class("operation", Resource, { started = true, updated = true, completed = true })
resource.Operation = Operation

--- True once the completed event has arrived.
function Operation:completed()
  return rawget(self, "status") ~= nil
end

--- In a spawned coroutine: waits until completion; returns status, reason.
function Operation:wait()
  if self:completed() then return self.status, self.reason end
  return self._session.async:wait("wait", function(wake)
    local waiters = rawget(self, "_waiters")
    if not waiters then waiters = {}; self._waiters = waiters end
    waiters[#waiters + 1] = wake
  end)
end

-- Applies one event of this operation and fires its callbacks.
function Operation:_event(ev)
  if ev.resource then self:_update(ev.resource) end
  if ev.type == "completed" then
    if self:completed() then return end -- a completed operation stays completed
    self.status = ev.status or "Success"
    self.reason = ev.reason
    self._session.registry:untrack(self)
    self:_emit("completed")
    local waiters = rawget(self, "_waiters")
    self._waiters = nil
    for _, wake in ipairs(waiters or {}) do wake(self.status, self.reason) end
  elseif ev.type == "started" or ev.type == "added" then
    self:_emit("started")
  else
    self:_emit("updated")
  end
end

-- Completes the operation locally (request refused, application lost).
function Operation:_fail(err)
  self:_event{ type = "completed", status = "Failure", reason = err }
end

return resource
