--- The session behind a client: autodiscovery, tokens, the application,
-- availability, the event channel, and recovery when the server loses any of
-- them. It owns every timer and every backoff of the client, so closing it
-- stops everything; it is the internal interface through which objects send
-- requests (`send`), find each other (`registry`), run a bot's callbacks
-- (`call`, `emit`) and report failures (`report`).
-- @module ucwa.session
local core = require "ucwa.core"
require "ucwa.application" -- registers the application class (kept lean)
local async = require "ucwa.async"
local discovery = require "ucwa.discovery"
local durable = require "ucwa.durable"
local dispatch = require "ucwa.dispatch"
local emitter = require "ucwa.emitter"
local errors = require "ucwa.errors"
local request = require "ucwa.request"
local resource = require "ucwa.resource"
local shared = require "ucwa.shared_discovery"
local signin_gate = require "ucwa.signin_gate"
local tokens = require "ucwa.tokens"
local trust = require "ucwa.trust"
local util = require "ucwa.util"

local session = {}

local Session = {}
Session.__index = Session
Session.__name = "ucwa.session"

local ACCEPT = { json = "application/json", xml = "application/xml" }

-- The options most bots leave at their defaults live once, here; a session's
-- options table holds only what differs (with 10,000 bots a copy of each
-- default in every session was ~0.4 KB a bot: issue 16).
local OPTION_DEFAULTS = {
  user_agent = "lua-ucwa/" .. core._VERSION, culture = "en-US", timeout = 30, event_timeout = 180,
  activity_interval = 180, available = true, aggregation = setmetatable({}, { __newindex = function()
    error("the shared default aggregation is read-only", 2)
  end }),
}
local SHARED_DEFAULTS = { __index = OPTION_DEFAULTS }

-- A session's options: those of `t` that differ from OPTION_DEFAULTS (in a
-- table of their own: one emptied in place would keep its size).
local function own_options(t)
  local own = {}
  for k, v in pairs(t) do
    if OPTION_DEFAULTS[k] ~= v then own[k] = v end
  end
  return setmetatable(own, SHARED_DEFAULTS)
end

--- A session for `client` with validated options `o` (see client.lua).
function session.new(client, o)
  local self = setmetatable({
    client = client,
    state = "new",
    format = o.format,
    accept = ACCEPT[o.format],
    anonymous = o.anonymous ~= nil,
    options = own_options{
      url = o.url, domain = o.domain, username = o.username,
      meeting = o.anonymous and o.anonymous.meeting,
      display_name = o.anonymous and o.anonymous.display_name,
      user_agent = o.user_agent, culture = o.culture,
      timeout = o.timeout, event_timeout = o.event_timeout, event_grace = o.event_grace,
      aggregation = o.aggregation,
      backoff = o.backoff, activity_interval = o.activity_interval, available = o.available,
      signin_attempts = o.signin_attempts, application_model = o.application_model,
    },
    engine = o.engine,
    own_engine = o.own_engine,
    log_fn = o.log,
    timers = {},       -- handle -> true: every timer this session armed and that has not fired
    named = {},        -- name -> handle, for timers that replace each other (renew, activity)
    deferred = {},     -- errors for step() to raise when no "error" handler took them
  }, Session)
  self.async = async.new(function(err) self:report(err) end)
  self.registry = dispatch.new(self)
  -- a plain function, so emitters can run handlers without knowing the session
  self.call = function(fn, ...)
    local ok, err = xpcall(fn, debug.traceback, ...)
    if not ok then self:report(errors.new{ code = "CallbackError", message = tostring(err) }) end
  end
  self.tokens = tokens.new(self, { password = o.password, token = o.token, anonymous = o.anonymous }, o.username)
  -- with a store: what a restart needs, written as it changes (ucwa.durable)
  self.durable = o.store and durable.new(self, o) or nil
  self.policy = trust.new{ root = o.url, domain = o.domain, trusted_domains = o.trusted_domains,
                           user = o.username or (o.anonymous and o.anonymous.meeting) }
  return self
end

function Session:set_state(state)
  self.state = state
  self.client.state = state
end

function Session:log(level, message)
  if self.log_fn then pcall(self.log_fn, level, message) end
end

--- Runs the client's handlers of `name` with (...).
function Session:emit(name, ...)
  emitter.emit(self.client, name, self.call, ...)
end

--- An error for the bot: to the client's "error" handlers, else raised from step().
function Session:report(err)
  self:log("error", tostring(err))
  if not emitter.has(self.client, "error") then
    self.deferred[#self.deferred + 1] = err
    return
  end
  emitter.emit(self.client, "error", function(fn, e)
    local ok, herr = xpcall(fn, debug.traceback, e)
    if not ok then self.deferred[#self.deferred + 1] = herr end
  end, err)
end

--- The next error step() must raise, or nil.
function Session:next_deferred()
  return table.remove(self.deferred, 1)
end

-- ------------------------------------------------------------------------
-- Timers: every one is the session's, so close() cancels them all.

local Handle = {}
Handle.__index = Handle
Handle.__name = "ucwa.timer"

--- Cancels the timer; true when it had not fired yet.
function Handle:cancel()
  local s = self.session
  if not s.timers[self] then return false end
  s.timers[self] = nil
  if self.name and s.named[self.name] == self then s.named[self.name] = nil end
  self.timer:cancel()
  return true
end

--- Calls fn() once after `seconds`; with `name`, replaces the timer of that
-- name. Returns a handle with `cancel()`.
function Session:after(seconds, fn, name)
  if name and self.named[name] then self.named[name]:cancel() end
  local h = setmetatable({ session = self, name = name }, Handle)
  h.timer = self.engine:timer(seconds, function()
    if not self.timers[h] then return end
    self.timers[h] = nil
    if name and self.named[name] == h then self.named[name] = nil end
    fn()
  end)
  self.timers[h] = true
  if name then self.named[name] = h end
  return h
end

--- In one of the session's coroutines: waits `seconds`.
function Session:sleep(seconds)
  return self.async:sleep(seconds, function(s, fn) self:after(s, fn) end)
end

-- Doubling delays between attempts, from `initial` to at most `max` seconds.
local Backoff = {}
Backoff.__index = Backoff

local function backoff(initial, max)
  return setmetatable({ delay = initial, max = max }, Backoff)
end

function Backoff:next()
  local d = self.delay
  self.delay = math.min(d * 2, self.max)
  return d
end

-- ------------------------------------------------------------------------
-- Requests

--- An absolute URL for a link (relative ones against the application), or nil and why.
function Session:absolute(url)
  if url:match("^%a[%w+.-]*:") then return url end
  return core.url_resolve(self.base or self.options.url, url)
end

--- Sends one request (see ucwa.request).
function Session:send(spec, done)
  return request.send(self, spec, done)
end

-- In a session coroutine: sends and waits; returns model, err, response.
function Session:fetch(spec)
  return self.async:await(function(done) request.send(self, spec, done) end)
end

-- ------------------------------------------------------------------------
-- Sign-in

-- Autodiscovery, then the user resource: from each root (the url option, or
-- the candidates of the domain), through redirects (the root's `redirect`
-- link, an HTTP 3xx, a user resource's `redirect`, with or without
-- `/oauth/user`), each passing RootURL.md's security check, to the user
-- resource with its applications link. Returns its model.
function Session:find_user()
  local roots = self.options.url and { self.options.url } or discovery.candidates(self.options.domain)
  local last_err
  for _, root in ipairs(roots) do
    self.shared_root = nil
    local user, err = self:walk(root)
    if not user and self.shared_root then
      -- another bot's answer of the root led nowhere: read it afresh
      shared.set_root(self.engine, root, nil)
      self.discovery_failed = true
      user, err = self:walk(root)
    end
    if user then return user end
    last_err = err
  end
  return nil, last_err
end

local function bad_response(message, url)
  return errors.new{ code = "BadResponse", message = message, url = url }
end

function Session:walk(url)
  -- the root and its redirects are public; from the user link on, the token
  local authed = false
  -- an HTTPS root makes an HTTPS session (a candidate of the domain may be http)
  self.policy.https = url:match("^[Hh][Tt][Tt][Pp][Ss]:") ~= nil
  for hop = 1, 8 do
    -- the root's answer, when another bot of the engine just read it (not
    -- after a failed sign-in: the deployment may have changed)
    local model = hop == 1 and not self.discovery_failed and shared.root(self.engine, url)
    local err, resp
    if model then
      self.shared_root = true
      resp = { status = 200, headers = {} }
    else
      model, err, resp = self:fetch{ method = "GET", url = url, auth = authed, app = false }
      if not model then return nil, err end
      if hop == 1 and resp.status == 200 and model ~= true and resource.link(model, "user") then
        shared.set_root(self.engine, url, model)
      end
    end
    local target, redirect
    local location = resp.status >= 300 and resp.status < 400 and resp.headers.location
    if location then
      target, redirect = location, true
    elseif model == true then
      return nil, bad_response(url .. " answered " .. resp.status .. " with no resource", url)
    elseif resource.link(model, "applications") or resource.link(model, "anonApplications") then
      self.user_url = url
      return model
    elseif resource.link(model, "redirect") then
      target, redirect = resource.link(model, "redirect"), true
    elseif resource.link(model, "user") then
      target, authed = resource.link(model, "user"), true
    else
      return nil, bad_response(url .. " has no user, redirect or applications link", url)
    end
    local next_url, why = core.url_resolve(url, target)
    if not next_url then
      return nil, errors.new{ code = "BadResponse", subcode = "BadLink", message = tostring(why) }
    end
    if redirect then
      local refused = self.policy:check_redirect(url, next_url)
      if refused then return nil, refused end
      -- an HTTP root that redirects to HTTPS makes the whole session HTTPS
      if next_url:match("^[Hh][Tt][Tt][Pp][Ss]:") then self.policy.https = true end
    end
    url = next_url
  end
  return nil, errors.new{ code = "Forbidden", subcode = "RedirectRefused", message = "too many redirects", url = url }
end

-- POST applications; sets the application.
function Session:create_application()
  local body = { userAgent = self.options.user_agent, culture = self.options.culture,
                 endpointId = not self.anonymous and self.client.endpoint_id or nil }
  local model, err, resp = self:fetch{ method = "POST", url = self.applications_url, body = body, app = false }
  if not model then return nil, err end
  local href = (model ~= true and model.href) or (resp and resp.headers.location)
  self.base = core.url_resolve(self.applications_url, href or self.applications_url)
  if model == true then
    model, err = self:fetch{ method = "GET", url = self.base }
    if not model then return nil, err end
  end
  self.application = resource.new(self, model)
  self.client.application = self.application
  return true
end

-- Reads `me` again: its links say what the server expects now.
function Session:refresh_me()
  local app = self.application
  local me_href = resource.embedded_link(app, "me", "self")
  if not me_href then return end
  -- with the scheduling values, in one batch where the server offers one (ucwa.batch)
  local me = require("ucwa.batch").signin_reads(self, me_href)
  if type(me) == "table" then app.embedded.me = me end
end

-- makeMeAvailable (needed to receive invitations); `again`: the server said
-- it forgot (MakeMeAvailableRequired), so `me` is read first for the link.
function Session:make_me_available(again)
  local app = self.application
  if again then self:refresh_me() end
  local href = resource.embedded_link(app, "me", "makeMeAvailable")
  if not href then return true end
  local _, err = self:fetch{ method = "POST", url = href, body = {
    signInAs = "Online", supportedModalities = { "Messaging" },
    supportedMessageFormats = { "Plain", "Html" } } }
  if err and err.subcode ~= "AlreadyExists" then return nil, err end
  -- reportMyActivity appears only now: read `me` again to find it.
  self:refresh_me()
  self:schedule_activity()
  return true
end

function Session:schedule_activity()
  self:after(self.options.activity_interval, function()
    local app = self.application
    local href = resource.embedded_link(app, "me", "reportMyActivity") or app:link("reportMyActivity")
    if href then
      self:send({ method = "POST", url = href }, function(_, err)
        if not err or err.subcode == "ApplicationNotFound" or err.subcode == "InactiveApplicationExpired" then
          return -- (a lost application is being created again)
        end
        if err.subcode == "MakeMeAvailableRequired" then
          -- the server forgot the bot's availability: ask again, then carry on
          self:log("warn", "reportMyActivity: MakeMeAvailableRequired; sending makeMeAvailable again")
          return self.async:spawn(function()
            local ok, e = self:make_me_available(true)
            if not ok then self:report(e) end
          end)
        end
        self:report(err)
      end)
    end
    if self.state == "ready" then self:schedule_activity() end
  end, "activity")
end

-- Opens the event channel at the application's events link, or at `url`
-- (a restart: the stored URL, with its ack, on the application's origin).
function Session:open_channel(stored)
  local href = self.application:link("events")
  if not href then return nil, errors.new{ code = "BadResponse", message = "application has no events link" } end
  local url, why = self:absolute(href)
  if not url then return nil, errors.new{ code = "BadResponse", subcode = "BadLink", message = tostring(why) } end
  if stored and trust.origin(stored) == trust.origin(url) and not self.policy:check(stored) then url = stored end
  local store = self.durable
  if self.channel then self.channel:close() end
  self.channel = self.engine:channel{
    url = url,
    headers = { Authorization = self.tokens:authorization(url), Accept = self.accept,
                ["X-MS-RequiresMinResourceVersion"] = request.MIN_RESOURCE_VERSION },
    timeout = self.options.event_timeout,
    low = self.options.aggregation.low, medium = self.options.aggregation.medium,
    grace = self.options.event_grace,
    backoff = self.options.backoff,
    -- with a store, each batch is stored before the next P-GET acknowledges it
    hold = store ~= nil,
    on_batch = function(batch, burl, ack)
      self.tokens:accepted() -- the channel got through with the token
      if store then return store:on_batch(batch, burl, ack) end
      self.seq = durable.stamp(batch, burl, self.seq or 0, ack) -- ev.id, as with a store
      self.registry:dispatch(batch)
    end,
    on_error = function(err) self:channel_error(err) end,
  }
  self.channel:start()
  return true
end

--- In a session coroutine: fn() with one of the engine's sign-in turns
-- (ucwa.signin_gate); returns what fn returns, or nil once closed.
function Session:gated(fn)
  if not signin_gate.enter(self) then return nil end
  local r = table.pack(pcall(fn))
  signin_gate.leave(self)
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

-- The whole sign-in, in a session coroutine.
function Session:signin()
  self:set_state("signing-in")
  self.client.endpoint_id = self.client.endpoint_id or util.uuid()
  local user, err = self:find_user()
  if not user then return nil, err end
  local apps = (self.anonymous and resource.link(user, "anonApplications")) or resource.link(user, "applications")
  if not apps then
    return nil, errors.new{ code = "BadResponse", message = "user resource has no applications link" }
  end
  self.applications_url = core.url_resolve(self.user_url, apps)
  return self:establish()
end

-- Application, availability, event channel: the part done again after a loss.
function Session:establish()
  local ok, err = self:create_application()
  if not ok then return nil, err end
  if not self.anonymous and self.options.available then
    ok, err = self:make_me_available()
    if not ok then return nil, err end
  end
  ok, err = self:open_channel()
  if not ok then return nil, err end
  self:set_state("ready")
  if self.durable then self.durable:application_ready() end
  return true
end

-- Faults that may pass: the network, timeouts, 5xx. A certificate that fails
-- verification, a refused redirect or a refused sign-in will not fix itself.
local function retryable(err)
  if not err then return true end
  if err.status then return err.status >= 500 or err.status == 429 end
  return err.code == "NetworkError" or err.code == "Timeout"
end

-- In a new session coroutine: attempt() until it returns true, with doubling
-- delays between tries; after a failure, failed(err) says whether to go on.
function Session:retry(attempt, failed)
  self.async:spawn(function()
    local delays = backoff(0.5, 30)
    while self.state ~= "closed" do
      local ok, err = attempt()
      if ok or self.state == "closed" or not failed(err) then return end
      self:sleep(delays:next())
    end
  end)
end

--- Signs in and opens the event channel; the client's "ready" fires when done.
function Session:start()
  if self.state ~= "new" then return end
  -- with a store: carry on the stored session when the server still has it
  if self.durable and not self.durable.started then
    self.durable.started = true
    return self.durable:start(function(on_ready)
      self.on_ready = on_ready
      self:start()
    end)
  end
  local attempts, limit = 0, self.options.signin_attempts
  self:retry(function()
    attempts = attempts + 1
    local ok, err = self:gated(function() return self:signin() end)
    if ok then
      self:emit("ready", self.client)
      local after = self.on_ready
      self.on_ready = nil
      if after then after() end
    end
    return ok, err
  end, function(err)
    self.discovery_failed = true -- the next try reads the root afresh
    self:set_state("new")
    -- every failed attempt reaches the bot; a refusal once, and no retry;
    -- with signin_attempts, the last one says so
    local again = retryable(err) and not (limit and attempts >= limit)
    err = err or errors.new{ code = "NetworkError", message = "sign-in failed" }
    if retryable(err) and not again then
      err.message = tostring(err.message) .. " (the last of " .. limit .. " sign-in attempts)"
    end
    err.retrying = again
    self:log("warn", "sign-in failed" .. (again and ", retrying: " or ": ") .. tostring(err))
    self:report(err)
    return again
  end)
end

-- ------------------------------------------------------------------------
-- Losing and recovering the application

--- Failed attempts at re-creating the application on its cached URL before
-- the whole sign-in (autodiscovery included) runs again.
session.REDISCOVER_AFTER = 3

--- P-GETs failing in a row before the bot hears of it (err.retrying = true),
-- and seconds of failing before autodiscovery runs again.
session.CHANNEL_REPORT_AFTER, session.CHANNEL_REDISCOVER_AFTER = 3, 120

--- 404 ApplicationNotFound (or InactiveApplicationExpired): create the
-- application again and tell the bot.
function Session:application_lost(err, rediscover_now)
  if self.state ~= "ready" then return end
  self:set_state("recovering")
  if self.channel then self.channel:close(); self.channel = nil end
  self.registry:session_lost("ApplicationNotFound", errors.new{ status = 404, code = "NotFound",
    subcode = "ApplicationNotFound", message = "the application was lost before the operation completed" })
  local rediscover, failures = rediscover_now == true, 0
  self.discovery_failed = true -- the pool may have moved: read the root afresh
  self:retry(function()
    -- the cached applications URL first; after it refused (403, 502) or
    -- failed a few times, the whole sign-in again: the pool may have moved
    local ok, e
    ok, e = self:gated(function()
      if rediscover then return self:signin() end
      return self:establish()
    end)
    if ok then self:emit("resumed", { reason = err.subcode or "ApplicationNotFound", error = err }) end
    return ok, e
  end, function(e)
    failures = failures + 1
    if e and (e.status == 403 or e.status == 502) or failures >= session.REDISCOVER_AFTER then
      rediscover = true
    end
    if self.state ~= "closed" then self:set_state("recovering") end
    self:log("warn", "re-creating the application failed: " .. tostring(e))
    if e then e.retrying = true; self:report(e) end
    return true
  end)
end

--- A fault the event channel reported (err.fatal: the channel stopped).
function Session:channel_error(err)
  if not err.fatal then
    self:log("warn", "event channel: " .. tostring(err.message or err.code) .. " (retrying)")
    -- a blip is the channel's to ride out; an outage reaches the bot, and a
    -- long one sends the session back to autodiscovery (the pool may have moved)
    local failures = err.failures or 1
    local now = os.time()
    if failures == 1 then self.channel_failing = now end
    if failures == session.CHANNEL_REPORT_AFTER then self:report(err) end
    if now - (self.channel_failing or now) >= session.CHANNEL_REDISCOVER_AFTER then
      self.channel_failing = nil
      return self:application_lost(err, true)
    end
    return
  end
  if err.subcode == "PGetReplaced" then
    -- A P-GET of someone else's replaced ours: another process drives this
    -- application. Fighting over it would replace theirs in turn: stop.
    if self.channel then self.channel:stop() end
    err.retrying = false
    err.message = "another client replaced this event channel's pending GET (another process drives the "
      .. "same application); the channel is stopped"
    return self:report(err)
  end
  if err.status == 401 and self.tokens:renewable() then
    self.tokens:renew(self.channel:url(), function(ok, e)
      if not ok then
        -- a renewal that may pass (the token service down, a timeout): tell
        -- the bot and try the channel again later; a refusal stops it
        e.retrying = retryable(e) and e.subcode ~= "TokenRefused"
        self:report(e)
        if not e.retrying then return end
        self.channel_delays = self.channel_delays or backoff(5, 60)
        return self:after(self.channel_delays:next(), function()
          if self.channel and self.state == "ready" then self.channel:start() end
        end, "channel")
      end
      if self.channel then self.channel:start() end
    end)
  elseif err.status == 404 then
    self:application_lost(err)
  else
    self:report(err)
    -- Keep the session: try the channel again a little later.
    self.channel_delays = self.channel_delays or backoff(5, 60)
    self:after(self.channel_delays:next(), function()
      if self.channel and self.state == "ready" then self.channel:start() end
    end, "channel")
  end
end

-- ------------------------------------------------------------------------
-- Closing

--- Stops driving the session without a word to the server (no DELETE: its
-- store keeps it for the process that carries on); `err`, when given, goes
-- to the bot. The state becomes "stopped".
function Session:release(err)
  if self.state == "closed" or self.state == "stopped" then return end
  for h in pairs(self.timers) do h:cancel() end
  if self.channel then self.channel:close(); self.channel = nil end
  self:set_state("stopped")
  if err then
    err.retrying = false
    self:report(err)
  end
end

--- Cancels every timer, closes the channel, deletes the application;
-- done(err) once the server answered (or at once when there is nothing to delete).
function Session:close(done)
  signin_gate.leave(self, true)
  for h in pairs(self.timers) do h:cancel() end
  if self.channel then self.channel:close(); self.channel = nil end
  local app = self.application
  -- stopped (another process carries on): the application is not ours to delete
  local href = self.state ~= "stopped" and app and app.href or nil
  -- signed out: nothing left to carry on
  if self.durable and href then self.durable:closed() end
  self:set_state("closing")
  local function finish(_, err)
    if self.state == "closed" then return end
    self:set_state("closed")
    for h in pairs(self.timers) do h:cancel() end
    done(err)
  end
  if href then
    -- the DELETE goes out while the state still allows it
    self.state = "closing"
    request.send(self, { method = "DELETE", url = href, raw = true, app = false, timeout = 5 }, finish)
  else
    finish()
  end
  return finish
end

return session
