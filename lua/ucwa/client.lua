--- The client: sign-in, the application, the event channel, and dispatch of
-- events to invitation and conversation objects.
-- @module ucwa.client
local core = require "ucwa.core"
local cjson = require "cjson.safe"
local async = require "ucwa.async"
local auth = require "ucwa.auth"
local discovery = require "ucwa.discovery"
local errors = require "ucwa.errors"
local invitation = require "ucwa.invitation"
require "ucwa.conversation" -- registers the conversation, participant and message classes
local resource = require "ucwa.resource"
local util = require "ucwa.util"

local client = {}

local Client = {}
Client.__index = Client
Client.__name = "ucwa.client"

-- Secrets live here, keyed by client, never in the object a bot may print or dump.
local secrets = setmetatable({}, { __mode = "k" })

local ACCEPT = { json = "application/json", xml = "application/xml" }
local CLIENT_EVENTS = { ready = true, invitation = true, resumed = true, error = true, closed = true }

local function check_options(opts)
  if type(opts) ~= "table" then error("bad argument #1 to 'client' (table expected)", 3) end
  if opts.url == nil and opts.domain == nil then
    error("bad argument #1 to 'client' (url or domain expected)", 3)
  end
  for _, k in ipairs{ "url", "domain", "username", "password", "user_agent", "culture", "ca_file" } do
    if opts[k] ~= nil and type(opts[k]) ~= "string" then
      error("bad argument #1 to 'client' (" .. k .. " must be a string)", 3)
    end
  end
  local format = opts.format or "json"
  if not ACCEPT[format] then error("bad argument #1 to 'client' (format must be \"json\" or \"xml\")", 3) end
  local t = opts.token
  if t ~= nil and type(t) ~= "string" and type(t) ~= "function" then
    error("bad argument #1 to 'client' (token must be a string or a function)", 3)
  end
  local a = opts.anonymous
  if a ~= nil and (type(a) ~= "table" or type(a.meeting) ~= "string") then
    error("bad argument #1 to 'client' (anonymous must be a table with a meeting string)", 3)
  end
  if not (opts.username or t or a) then
    error("bad argument #1 to 'client' (username and password, token, or anonymous expected)", 3)
  end
  if opts.log ~= nil and type(opts.log) ~= "function" then
    error("bad argument #1 to 'client' (log must be a function)", 3)
  end
  return format
end

--- Makes a client. See the README for the options.
function client.new(opts)
  local format = check_options(opts)
  local self = setmetatable({
    format = format,
    anonymous = opts.anonymous and true or false,
    options = {
      url = opts.url, domain = opts.domain, username = opts.username,
      meeting = opts.anonymous and opts.anonymous.meeting,
      display_name = opts.anonymous and opts.anonymous.display_name,
      user_agent = opts.user_agent or ("lua-ucwa/" .. core._VERSION),
      culture = opts.culture or "en-US",
      timeout = opts.timeout or 30,
      event_timeout = opts.event_timeout or 180,
      event_grace = opts.event_grace,   -- client-side margin over event_timeout
      backoff = opts.backoff,           -- {initial=, max=} seconds, for the event channel
      activity_interval = opts.activity_interval or 180,
      available = opts.available ~= false,
    },
    -- Many bots may share one engine (one epoll set, one connection pool).
    engine = opts.engine or core.engine{
      verify = opts.verify ~= false, ca_file = opts.ca_file,
      user_agent = opts.user_agent or ("lua-ucwa/" .. core._VERSION),
      max_body = opts.max_body,
    },
    _own_engine = opts.engine == nil,
    state = "new",
    _accept = ACCEPT[format],
    _log_fn = opts.log,
    _handlers = {}, _raw_handlers = {},
    _spawned = setmetatable({}, { __mode = "k" }),
    _objects = setmetatable({}, { __mode = "v" }),  -- href -> object
    _pending = {},                                  -- incomplete operations, kept alive
    _by_operation = {},                             -- operationId -> object
    _orphans = {},                                  -- href -> events that came before the 201
    _timers = {},
    _deferred_errors = {},
  }, Client)
  secrets[self] = {
    password = opts.password, token = opts.token, anonymous = opts.anonymous,
  }
  return self
end

function Client:__tostring()
  return "ucwa.client(" .. tostring(self.options.url or self.options.domain) .. ", " .. self.state .. ")"
end

-- ------------------------------------------------------------------------
-- Callbacks

--- Registers fn for a client event: ready, invitation, resumed, error, closed.
function Client:on(name, fn)
  if not CLIENT_EVENTS[name] then
    error("bad argument #1 to 'on' (unknown client event '" .. tostring(name) .. "')", 2)
  end
  if type(fn) ~= "function" then error("bad argument #2 to 'on' (function expected)", 2) end
  util.add_handler(self._handlers, name, fn)
  return self
end

--- Registers fn(event, sender) for every raw event of the event channel.
function Client:on_event(fn)
  if type(fn) ~= "function" then error("bad argument #1 to 'on_event' (function expected)", 2) end
  self._raw_handlers[#self._raw_handlers + 1] = fn
  return self
end

function Client:_log(level, message)
  if self._log_fn then pcall(self._log_fn, level, message) end
end

-- Runs a bot's handler; an error in it goes to the "error" handlers, or, with
-- none, is raised from step()/run() once the current dispatch is done.
function Client:_call_handler(fn, ...)
  local ok, err = util.traceback_call(fn, ...)
  if not ok then
    self:_report(errors.new{ code = "CallbackError", message = tostring(err) })
  end
end

function Client:_emit(name, ...)
  for _, fn in ipairs(self._handlers[name] or {}) do
    self:_call_handler(fn, ...)
  end
end

--- An error for the bot: to the "error" handlers, else raised from step().
function Client:_report(err)
  self:_log("error", tostring(err))
  local list = self._handlers.error
  if list and #list > 0 then
    for _, fn in ipairs(list) do
      local ok, e = util.traceback_call(fn, err)
      if not ok then self._deferred_errors[#self._deferred_errors + 1] = e end
    end
  else
    self._deferred_errors[#self._deferred_errors + 1] = err
  end
end

-- ------------------------------------------------------------------------
-- Coroutines

--- Runs fn(...) in a coroutine in which network methods may be called
-- without a callback: they yield and return result, err.
function Client:spawn(fn, ...)
  if type(fn) ~= "function" then error("bad argument #1 to 'spawn' (function expected)", 2) end
  local co = coroutine.create(fn)
  self._spawned[co] = true
  self:_resume(co, ...)
  return co
end

function Client:_resume(co, ...)
  local ok, err = coroutine.resume(co, ...)
  if not ok then
    self._spawned[co] = nil
    self:_report(errors.new{ code = "CallbackError", message = debug.traceback(co, tostring(err)) })
  elseif coroutine.status(co) == "dead" then
    self._spawned[co] = nil
  end
end

-- Internal coroutine steps: yields until the request completes.
function Client:_await(spec)
  return async.await(self, coroutine.running(), function(done) self:_send(spec, done) end)
end

-- ------------------------------------------------------------------------
-- Requests

function Client:_absolute(url)
  if url:match("^%a[%w+.-]*:") then return url end
  return core.url_resolve(self._base or self.options.url, url)
end

function Client:_auth_header()
  local s = self._token
  return s and (s.type .. " " .. s.value)
end

--- Sends one request. done(model_or_true, err, response).
-- spec: method, url, body (table, encoded in the client's format),
-- raw_body + content_type, query, auth (false: no token), raw (no parsing).
function Client:_send(spec, done, retried)
  if self.state == "closed" then
    return done(nil, errors.new{ code = "Closed", message = "client is closed" })
  end
  local url, why = self:_absolute(spec.url)
  if url and spec.query then url, why = core.url_with_query(url, spec.query) end
  if not url then
    -- a link from the server that no URL parser accepts
    return done(nil, errors.new{ code = "BadResponse", subcode = "BadLink", message = tostring(why) })
  end
  local headers = { Accept = spec.accept or self._accept }
  local body, ctype = spec.raw_body, spec.content_type
  if spec.body ~= nil then body, ctype = core.encode(spec.body, self.format) end
  if ctype then headers["Content-Type"] = ctype end
  local token = spec.auth ~= false and self:_auth_header()
  if token then headers.Authorization = token end
  self:_log("debug", spec.method .. " " .. url)
  self.engine:request{
    method = spec.method, url = url, headers = headers, body = body or (spec.method == "POST" and "" or nil),
    timeout = spec.timeout or self.options.timeout,
    callback = function(resp, terr)
      if not resp then return done(nil, errors.new(terr)) end
      local status = resp.status
      self:_log("debug", spec.method .. " " .. url .. " -> " .. status)
      if status == 401 and token and not retried and self:_can_renew() then
        return self:_renew_token(function(ok, err)
          if not ok then return done(nil, err, resp) end
          self:_send(spec, done, true)
        end)
      end
      local rtype = resp.headers["content-type"]
      if status >= 400 then
        local err = core.parse_error(resp.body, rtype, status)
        if err.subcode == "ApplicationNotFound" and spec.app ~= false then
          self:_application_lost(err)
        end
        return done(nil, err, resp)
      end
      if spec.raw or not resp.body or resp.body == "" then return done(true, nil, resp) end
      local model, perr = core.parse(resp.body, rtype)
      if not model then return done(nil, perr, resp) end
      done(model, nil, resp)
    end,
  }
end

-- ------------------------------------------------------------------------
-- Tokens

function Client:_can_renew()
  local s = secrets[self]
  return type(s.token) == "function" or s.anonymous ~= nil or self.options.username ~= nil
end

-- Gets a token for the first time or again. done(true) or done(nil, err).
function Client:_renew_token(done)
  if self._renewing then
    table.insert(self._renewing, done)
    return
  end
  self._renewing = { done }
  local function finish(ok, err)
    local waiters = self._renewing
    self._renewing = nil
    for _, fn in ipairs(waiters) do fn(ok, err) end
  end
  local s = secrets[self]
  if type(s.token) == "function" then
    local ok, tok = pcall(s.token, self._user_url)
    if not ok or type(tok) ~= "string" then
      return finish(nil, errors.new{ code = "Unauthorized", message = "token function failed" })
    end
    self._token = { type = "Bearer", value = tok }
    return finish(true)
  elseif type(s.token) == "string" then
    self._token = { type = "Bearer", value = s.token }
    return finish(true)
  end
  if not self._token_url then
    return finish(nil, errors.new{ status = 401, code = "Unauthorized", message = "no token service known" })
  end
  local old = self.anonymous and self._token and self._token.value or nil
  local body, grant = auth.token_request({ username = self.options.username, password = s.password,
                                          anonymous = s.anonymous }, old)
  if not body then return finish(nil, errors.new{ code = "BadRequest", message = grant }) end
  self:_send({ method = "POST", url = self._token_url, raw_body = body, auth = false, raw = true, app = false,
               content_type = "application/x-www-form-urlencoded;charset=UTF-8", accept = "application/json" },
    function(ok, err, resp)
      if not ok then
        if resp and resp.status < 500 then
          -- The token service's own error shape: {"error": "invalid_grant", ...}; no secrets in it.
          local j = cjson.decode(resp.body or "")
          err = errors.new{ status = resp.status, code = "Unauthorized",
                            subcode = type(j) == "table" and j.error or nil,
                            message = grant .. " grant refused by the token service" }
        end
        return finish(nil, err)
      end
      local j = cjson.decode(resp.body or "")
      if type(j) ~= "table" or type(j.access_token) ~= "string" then
        return finish(nil, errors.new{ status = resp.status, code = "BadResponse",
                                       message = "token service answered without access_token" })
      end
      self._token = { type = j.token_type or "Bearer", value = j.access_token }
      self.token_scope = j.ms_rtc_identityscope
      if self._channel then self._channel:set_header("Authorization", self:_auth_header()) end
      self:_schedule_renewal(tonumber(j.expires_in))
      finish(true)
    end)
end

function Client:_schedule_renewal(expires_in)
  if self._timers.renew then self._timers.renew:cancel() end
  if not expires_in then return end
  local ahead = math.min(300, expires_in / 10)
  self._timers.renew = self.engine:timer(math.max(1, expires_in - ahead), function()
    self._timers.renew = nil
    self:_renew_token(function(ok, err)
      if not ok then self:_report(err) end
    end)
  end)
end

-- ------------------------------------------------------------------------
-- Sign-in

-- Autodiscovery: the user resource's URL.
function Client:_discover()
  local roots = self.options.url and { self.options.url } or discovery.candidates(self.options.domain)
  local last_err
  for _, root in ipairs(roots) do
    local url, hops = root, 0
    while url do
      local model, err = self:_await{ method = "GET", url = url, auth = false, app = false }
      if not model then last_err = err; break end
      local redirect = model.links and model.links.redirect and model.links.redirect.href
      if redirect then
        redirect = core.url_resolve(url, redirect)
        local ok, why = discovery.redirect_allowed(url, redirect)
        hops = hops + 1
        if not ok or hops > 4 then
          last_err = errors.new{ code = "Forbidden", subcode = "RedirectRefused",
                                 message = why or "too many redirects" }
          break
        end
        url = redirect
      else
        local user = model.links and model.links.user and model.links.user.href
        if not user then
          last_err = errors.new{ code = "BadResponse", message = "autodiscover root has no user link" }
          break
        end
        return core.url_resolve(url, user)
      end
    end
  end
  return nil, last_err
end

-- GET the user resource, answering its challenge; returns its model.
function Client:_user(user_url)
  for _ = 1, 5 do
    self._user_url = user_url
    if self._token == nil and secrets[self].token ~= nil then
      local ok, err = async.await(self, coroutine.running(), function(d) self:_renew_token(d) end)
      if not ok then return nil, err end
    end
    local model, err, resp = self:_await{ method = "GET", url = user_url, auth = self._token ~= nil, app = false }
    if resp and resp.status == 401 and not self._token_url then
      local challenge, why = auth.oauth_challenge(resp.headers["www-authenticate"])
      if not challenge then
        return nil, errors.new{ status = 401, code = "Unauthorized", message = why }
      end
      self._token_url = core.url_resolve(user_url, challenge.href)
      local ok, terr = async.await(self, coroutine.running(), function(d) self:_renew_token(d) end)
      if not ok then return nil, terr end
    elseif not model then
      return nil, err
    else
      local redirect = model.links.redirect and model.links.redirect.href
      if not redirect then return model end
      user_url = core.url_resolve(user_url, redirect)
    end
  end
  return nil, errors.new{ code = "Unauthorized", message = "sign-in did not settle after 5 tries" }
end

-- POST applications; sets the application and its event channel.
function Client:_create_application()
  local body = { userAgent = self.options.user_agent, culture = self.options.culture,
                 endpointId = self.endpoint_id }
  if self.anonymous then body.endpointId = nil end
  local model, err, resp = self:_await{ method = "POST", url = self._applications_url, body = body, app = false }
  if not model then return nil, err end
  local href = (model ~= true and model.href) or (resp and resp.headers.location)
  self._base = core.url_resolve(self._applications_url, href or self._applications_url)
  if model == true then
    model, err = self:_await{ method = "GET", url = self._base }
    if not model then return nil, err end
  end
  self.application = resource.new(self, model)
  return true
end

local function embedded_link(app, rel, link)
  local emb = app.embedded[rel]
  if not emb then return nil end
  if link == "self" then return emb.href end
  local l = emb.links and emb.links[link]
  return l and l.href
end

function Client:_make_me_available()
  local href = embedded_link(self.application, "me", "makeMeAvailable")
  if not href then return true end
  local _, err = self:_await{ method = "POST", url = href, body = {
    signInAs = "Online", supportedModalities = { "Messaging" },
    supportedMessageFormats = { "Plain", "Html" } } }
  if err and err.subcode ~= "AlreadyExists" then return nil, err end
  -- reportMyActivity appears only now: read `me` again to find it.
  local me_href = embedded_link(self.application, "me", "self")
  local me = me_href and self:_await{ method = "GET", url = me_href }
  if type(me) == "table" then self.application.embedded.me = me end
  self:_schedule_activity()
  return true
end

function Client:_schedule_activity()
  if self._timers.activity then self._timers.activity:cancel() end
  self._timers.activity = self.engine:timer(self.options.activity_interval, function()
    self._timers.activity = nil
    local href = embedded_link(self.application, "me", "reportMyActivity")
      or self.application:link("reportMyActivity")
    if href then
      self:_send({ method = "POST", url = href }, function(_, err)
        if err and err.subcode ~= "ApplicationNotFound" then self:_report(err) end
      end)
    end
    if self.state == "ready" then self:_schedule_activity() end
  end)
end

function Client:_open_channel()
  local href = self.application:link("events")
  if not href then return nil, errors.new{ code = "BadResponse", message = "application has no events link" } end
  local url, why = self:_absolute(href)
  if not url then return nil, errors.new{ code = "BadResponse", subcode = "BadLink", message = tostring(why) } end
  if self._channel then self._channel:close() end
  self._channel = self.engine:channel{
    url = url,
    headers = { Authorization = self:_auth_header(), Accept = self._accept },
    timeout = self.options.event_timeout,
    grace = self.options.event_grace,
    backoff = self.options.backoff,
    on_batch = function(batch) self:_dispatch(batch) end,
    on_error = function(err) self:_channel_error(err) end,
  }
  self._channel:start()
  return true
end

-- The whole sign-in, in an internal coroutine; retried on network faults.
function Client:_signin()
  self.state = "signing-in"
  self.endpoint_id = self.endpoint_id or util.uuid()
  local user_url, err = self:_discover()
  if not user_url then return nil, err end
  local user
  user, err = self:_user(user_url)
  if not user then return nil, err end
  local apps = (self.anonymous and user.links.anonApplications) or user.links.applications
  if not apps then
    return nil, errors.new{ code = "BadResponse", message = "user resource has no applications link" }
  end
  self._applications_url = core.url_resolve(user_url, apps.href)
  return self:_establish()
end

-- Application, availability, event channel: the part done again after a loss.
function Client:_establish()
  local ok, err = self:_create_application()
  if not ok then return nil, err end
  if not self.anonymous and self.options.available then
    ok, err = self:_make_me_available()
    if not ok then return nil, err end
  end
  ok, err = self:_open_channel()
  if not ok then return nil, err end
  self.state = "ready"
  return true
end

-- Faults that may pass: the network, timeouts, 5xx. A certificate that fails
-- verification, a refused redirect or a refused sign-in will not fix itself.
local function retryable(err)
  if not err then return true end
  if err.status then return err.status >= 500 or err.status == 429 end
  return err.code == "NetworkError" or err.code == "Timeout"
end

--- Signs in and opens the event channel; "ready" fires when done.
function Client:start()
  if self.state ~= "new" and self.state ~= "stopped" then return self end
  self._stopped = false
  self:spawn(function()
    local delay = 0.5
    while true do
      local ok, err = self:_signin()
      if ok then self:_emit("ready", self); return end
      if self.state == "closed" then return end
      self.state = "new"
      if not retryable(err) then self:_report(err); return end
      self:_log("warn", "sign-in failed, retrying: " .. tostring(err))
      self:_sleep(delay)
      delay = math.min(delay * 2, 30)
    end
  end)
  return self
end

function Client:_sleep(seconds)
  local co = coroutine.running()
  self.engine:timer(seconds, function() self:_resume(co) end)
  coroutine.yield()
end

-- ------------------------------------------------------------------------
-- Losing and recovering the application

function Client:_fail_pending(reason)
  local pending = self._pending
  self._pending, self._by_operation, self._orphans = {}, {}, {}
  for obj in pairs(pending) do obj:_fail(reason) end
end

-- 404 ApplicationNotFound: create the application again and tell the bot.
function Client:_application_lost(err)
  if self._recovering or self.state ~= "ready" then return end
  self._recovering = true
  self.state = "recovering"
  if self._channel then self._channel:close(); self._channel = nil end
  self:_fail_pending(errors.new{ status = 404, code = "NotFound", subcode = "ApplicationNotFound",
                                 message = "the application was lost before the operation completed" })
  self:spawn(function()
    local delay = 0.5
    while self.state ~= "closed" do
      local ok, e = self:_establish()
      if ok then
        self._recovering = false
        self:_emit("resumed", { reason = "ApplicationNotFound", error = err })
        return
      end
      self:_log("warn", "re-creating the application failed: " .. tostring(e))
      self:_sleep(delay)
      delay = math.min(delay * 2, 30)
    end
  end)
end

function Client:_channel_error(err)
  if err.fatal then
    if err.status == 401 and self:_can_renew() then
      self:_renew_token(function(ok, e)
        if not ok then return self:_report(e) end
        if self._channel then
          self._channel:set_header("Authorization", self:_auth_header())
          self._channel:start()
        end
      end)
    elseif err.status == 404 then
      self:_application_lost(errors.new(err))
    else
      self:_report(errors.new(err))
      -- Keep the session: try the channel again a little later.
      self.engine:timer(5, function()
        if self._channel and self.state == "ready" then self._channel:start() end
      end)
    end
  else
    self:_log("warn", "event channel: " .. tostring(err.message or err.code) .. " (retrying)")
  end
end

-- ------------------------------------------------------------------------
-- Events

local OPERATION = {}
for _, rel in ipairs(invitation.rels) do OPERATION[rel] = true end

-- Registers obj under its href, and replays events that came before it was known.
function Client:_register(obj)
  if not obj.href then return end
  local href = self:_absolute(obj.href)
  self._objects[href] = obj
  local early = self._orphans[href]
  if early then
    self._orphans[href] = nil
    for _, ev in ipairs(early) do obj:_event(ev) end
  end
end

function Client:_keep_pending(obj, operation_id)
  self._pending[obj] = true
  if operation_id then self._by_operation[operation_id] = obj end
end

function Client:_forget_pending(obj)
  self._pending[obj] = nil
  local id = obj.properties.operationId
  if id and self._by_operation[id] == obj then self._by_operation[id] = nil end
end

--- The object for a model: the known one (updated) or a new one.
function Client:_object(model, rel)
  local href = model.href and self:_absolute(model.href)
  local obj = href and self._objects[href]
  if obj then
    obj:_update(model)
    return obj
  end
  obj = resource.new(self, model, rel)
  self:_register(obj)
  return obj
end

function Client:_dispatch(batch)
  local links = batch.links or {}
  -- resume: the server closed what it held (conversations, operations), so
  -- operations in flight cannot complete. resync: the channel went back to the
  -- first unacknowledged batch, nothing is lost; the bot is told all the same.
  if links.resume then
    self:_fail_pending(errors.new{ code = "Gone", subcode = "EventChannelResumed",
                                   message = "the event channel was resumed; the server's state was reset" })
    self:_emit("resumed", { reason = "resume" })
  elseif links.resync then
    self:_emit("resumed", { reason = "resync" })
  end
  for _, sender in ipairs(batch.senders or {}) do
    for _, ev in ipairs(sender.events or {}) do
      for _, fn in ipairs(self._raw_handlers) do self:_call_handler(fn, ev, sender) end
      self:_route(ev, sender)
    end
  end
end

-- The object a bare link names: the known one, or a new one fetched in the background.
function Client:_object_for_link(rel, href)
  local obj = self._objects[self:_absolute(href)]
  if obj then return obj end
  obj = self:_object({ rel = rel, href = href }, rel)
  obj:refresh(function(_, err) if err then self:_log("warn", "fetching " .. href .. ": " .. tostring(err)) end end)
  return obj
end

function Client:_route(ev, sender)
  if sender.rel == "conversation" and sender.href then
    return self:_object_for_link("conversation", sender.href):_sender_event(ev)
  end
  local link = ev.link or {}
  local href = link.href and self:_absolute(link.href)
  local obj = href and self._objects[href]
  local res = ev.resource
  if not obj and res and res.properties and res.properties.operationId then
    obj = self._by_operation[res.properties.operationId]
    if obj and not obj.href then
      obj.href = href
      self:_register(obj)
    end
  end
  if obj then
    if obj._event then obj:_event(ev, sender) end
    return
  end
  if link.rel == "conversation" and href then
    local conv = res and self:_object(res, "conversation") or self:_object_for_link("conversation", href)
    return conv:_event(ev)
  end
  if OPERATION[link.rel] then
    local direction = res and res.properties and res.properties.direction
    if direction == "Incoming" and (ev.type == "started" or ev.type == "added") then
      return self:_incoming(ev, href, link.rel)
    end
    if res == nil or direction == nil then
      -- An outgoing operation whose 201 has not arrived yet: keep it for later.
      local list = self._orphans[href] or {}
      list[#list + 1] = ev
      self._orphans[href] = list
    end
  end
end

-- An incoming invitation: an object of its kind, then the "invitation" callbacks.
function Client:_incoming(ev, href, rel)
  local function deliver(model)
    local inv = resource.new(self, model, rel)
    inv.href = inv.href or href
    self:_register(inv)
    self:_keep_pending(inv)
    self:_emit("invitation", inv)
    inv:_event(ev)
  end
  if ev.resource then return deliver(ev.resource) end
  self:_send({ method = "GET", url = href }, function(model, err)
    if not model then return self:_report(err) end
    deliver(model)
  end)
end

-- ------------------------------------------------------------------------
-- Meetings

local function communication_link(self, rel)
  local app = self.application
  local href = app and embedded_link(app, "communication", rel)
  return href
end

-- Starts an outgoing onlineMeetingInvitation through link `rel`.
function Client:_invite(rel, args, cb, what)
  if type(args) ~= "table" then error("bad argument #1 to '" .. what .. "' (table expected)", 3) end
  local body = {}
  for k, v in pairs(args) do body[k] = v end
  if self.anonymous and body.anonymousDisplayName == nil then
    body.anonymousDisplayName = self.options.display_name
  end
  local err = invitation.validate(body, self.anonymous, what)
  body.operationId = body.operationId or util.operation_id()
  local inv = resource.new(self, { rel = "onlineMeetingInvitation",
    properties = { operationId = body.operationId, subject = body.subject,
                   onlineMeetingUri = body.onlineMeetingUri, direction = "Outgoing" } })
  if err then
    inv:_fail(err)
    if cb then cb(nil, err) end
    return nil, err
  end
  self:_keep_pending(inv, body.operationId)
  local href = communication_link(self, rel)
  if not href then
    local e = errors.new{ code = "NotAllowed",
                          message = "not signed in, or the server gives no " .. rel .. " link" }
    self:_forget_pending(inv)
    inv:_fail(e)
    if cb then cb(nil, e) end
    return nil, e
  end
  async.call(self, cb, function(done)
    self:_send({ method = "POST", url = href, body = body }, function(model, e, resp)
      if e then
        inv:_fail(e)
        return done(nil, e)
      end
      local location = resp.headers.location
      if type(model) == "table" then inv:_update(model) end
      inv.href = inv.href or location
      self:_register(inv)
      inv:_check_cancel()
      done(inv)
    end)
  end)
  return inv
end

--- Joins an online meeting: returns the onlineMeetingInvitation at once.
-- args: onlineMeetingUri (required), subject, importance, threadId,
-- operationId, anonymousDisplayName. cb(invitation, err) when the server answers.
function Client:join_meeting(args, cb)
  if type(args) ~= "table" or type(args.onlineMeetingUri) ~= "string" then
    error("bad argument #1 to 'join_meeting' (table with onlineMeetingUri expected)", 2)
  end
  return self:_invite("joinOnlineMeeting", args, cb, "join_meeting")
end

--- Starts an ad hoc meeting: args subject, importance, threadId, operationId.
function Client:start_meeting(args, cb)
  if type(args) == "function" then args, cb = nil, args end
  return self:_invite("startOnlineMeeting", args or {}, cb, "start_meeting")
end

-- ------------------------------------------------------------------------
-- The loop

--- Runs ready work for up to `timeout` seconds (0: only what is ready).
function Client:step(timeout)
  if self._stepping then error("nested step: step/run called from a callback", 2) end
  self._stepping = true
  local ok, err = pcall(self.engine.step, self.engine, timeout or 0)
  self._stepping = false
  if not ok then error(err, 0) end
  -- one error per step; the others wait for the next step, none is dropped
  if #self._deferred_errors > 0 then error(table.remove(self._deferred_errors, 1), 0) end
  return self
end

--- Runs the loop until client:stop() or client:close().
function Client:run()
  self._stopped = false
  while not self._stopped and self.state ~= "closed" do
    self:step(1)
  end
  return self
end

--- Makes run() return.
function Client:stop()
  self._stopped = true
  return self
end

--- Calls fn() once after `seconds`; returns the timer (`:cancel()`).
function Client:after(seconds, fn)
  if type(seconds) ~= "number" then error("bad argument #1 to 'after' (number expected)", 2) end
  if type(fn) ~= "function" then error("bad argument #2 to 'after' (function expected)", 2) end
  return self.engine:timer(seconds, function() self:_call_handler(fn) end)
end

function Client:pollfd() return self.engine:pollfd() end
function Client:events() return self.engine:events() end
function Client:timeout() return self.engine:timeout() end

--- Signs out: deletes the application, closes the channel and the engine. cb(true, err).
function Client:close(cb)
  if self.state == "closed" then
    if cb then cb(true) end
    return
  end
  for _, t in pairs(self._timers) do t:cancel() end
  self._timers = {}
  if self._channel then self._channel:close(); self._channel = nil end
  local function finish(_, err)
    self.state = "closed"
    self._stopped = true
    self:_emit("closed", self)
    if self._own_engine then self.engine:close() end
    if cb then cb(err == nil, err) end
  end
  if self.application and self.application.href then
    self:_send({ method = "DELETE", url = self.application.href, raw = true, app = false, timeout = 5 }, finish)
    -- drive the DELETE to completion when nobody else is looping
    if not self._stepping then
      local deadline = os.time() + 6
      while self.state ~= "closed" and os.time() <= deadline do
        -- a shared engine may be stepping already (close from another bot's callback)
        if not pcall(self.engine.step, self.engine, 0.2) then break end
      end
      if self.state ~= "closed" then finish() end
    end
  else
    finish()
  end
end
Client.__close = Client.close
Client.__gc = function(self)
  if self.state ~= "closed" and self._own_engine then self.engine:close() end
end

client.Client = Client
return client
