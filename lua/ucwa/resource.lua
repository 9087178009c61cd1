--- Resource objects: a UCWA resource with its properties by name, callbacks
-- per event type, and link navigation. Classes (invitation, conversation ...)
-- derive from it.
-- @module ucwa.resource
local async = require "ucwa.async"
local errors = require "ucwa.errors"
local util = require "ucwa.util"

local resource = {}
local classes = {}

local Resource = {}
resource.Resource = Resource

--- Makes a class whose instances find methods first, then properties by name.
function resource.class(name, parent)
  local class = setmetatable({ _name = name }, { __index = parent or Resource })
  class.__index = function(self, key)
    local v = class[key]
    if v ~= nil then return v end
    local props = rawget(self, "properties")
    return props and props[key]
  end
  class.__tostring = function(self)
    return "ucwa." .. tostring(self.rel or name) .. "(" .. tostring(self.href) .. ")"
  end
  return class
end

--- Registers the class used for resources of a rel.
function resource.register(rel, class)
  classes[rel] = class
end

local Generic = resource.class("resource")

--- A new object for a parsed model, of the class registered for its rel.
function resource.new(client, model, rel)
  rel = rel or model.rel
  local class = classes[rel] or Generic
  local self = setmetatable({
    _client = client, _handlers = {}, rel = rel, href = model.href,
    properties = {}, links = {}, embedded = {},
  }, class)
  self:_update(model)
  if class._init then class._init(self) end
  return self
end

--- Takes the properties, links and embedded resources of a fresh representation.
function Resource:_update(model)
  if model.rel and not rawget(self, "rel") then self.rel = model.rel end
  if model.href then self.href = model.href end
  if model.properties then self.properties = model.properties end
  if model.links then self.links = model.links end
  if model.embedded then self.embedded = model.embedded end
end

--- Calls fn(self, ...) on each `name` event of this object. Returns self.
function Resource:on(name, fn)
  if type(name) ~= "string" then error("bad argument #1 to 'on' (string expected)", 2) end
  if type(fn) ~= "function" then error("bad argument #2 to 'on' (function expected)", 2) end
  util.add_handler(self._handlers, name, fn)
  return self
end

--- Runs the handlers of `name`; their errors go to the client's error path.
function Resource:_emit(name, ...)
  local list = self._handlers[name]
  if not list then return end
  for i = 1, #list do
    self._client:_call_handler(list[i], self, ...)
  end
end

--- The href of a link, or nil.
function Resource:link(rel)
  local l = self.links[rel]
  if l and l[1] then l = l[1] end
  return l and l.href
end

--- Fetches the resource again and updates this object. cb(self, err).
function Resource:refresh(cb)
  return async.call(self._client, cb, function(done)
    self._client:_send({ method = "GET", url = self.href }, function(model, err)
      if not model then return done(nil, err) end
      self:_update(model)
      done(self)
    end)
  end)
end

--- Follows link `rel`: the embedded resource when the event carried one,
-- else a GET. cb(object, err).
function Resource:_follow(rel, cb)
  local client = self._client
  return async.call(client, cb, function(done)
    local emb = self.embedded[rel]
    if emb and emb.rel then
      return done(client:_object(emb))
    end
    local href = self:link(rel)
    local known = href and client._objects[client:_absolute(href)]
    if known and next(known.links) then return done(known) end
    if not href then
      return done(nil, errors.new{ code = "NotFound", subcode = "NoLink",
        message = tostring(self.rel) .. " has no " .. rel .. " link" })
    end
    client:_send({ method = "GET", url = href }, function(model, err)
      if not model then return done(nil, err) end
      done(client:_object(model))
    end)
  end)
end

--- POSTs to link `rel` (with an optional body table). cb(true, err).
function Resource:_post(rel, body, cb, query)
  local client = self._client
  return async.call(client, cb, function(done)
    local href = self:link(rel)
    if not href then
      return done(nil, errors.new{ code = "NotAllowed", subcode = "NoLink",
        message = tostring(self.rel) .. " has no " .. rel .. " link now" })
    end
    client:_send({ method = "POST", url = href, body = body, query = query }, function(_, err)
      if err then return done(nil, err) end
      done(true)
    end)
  end)
end

--- Operations (invitations, messages): started, updated, completed events;
-- after completion `status` is "Success" or "Failure" and `reason` says why.
local Operation = resource.class("operation")
resource.Operation = Operation

--- True once the completed event has arrived.
function Operation:completed()
  return rawget(self, "status") ~= nil
end

--- In a spawned coroutine: waits until completion; returns status, reason.
function Operation:wait()
  if self:completed() then return self.status, self.reason end
  return async.wait(self._client, "wait", function(wake)
    local waiters = rawget(self, "_waiters")
    if not waiters then waiters = {}; self._waiters = waiters end
    waiters[#waiters + 1] = wake
  end)
end

--- Applies one event of this operation and fires its callbacks.
function Operation:_event(ev)
  if ev.resource then self:_update(ev.resource) end
  if ev.type == "completed" then
    if self:completed() then return end -- a completed operation stays completed
    self.status = ev.status or "Success"
    self.reason = ev.reason
    self._client:_forget_pending(self)
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

--- Completes the operation locally (request refused, application lost).
function Operation:_fail(err)
  self:_event{ type = "completed", status = "Failure", reason = err }
end

return resource
