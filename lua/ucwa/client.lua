--- The client: what a bot holds. Options, callbacks, the loop, meetings.
-- Sign-in, tokens, the application and recovery are the session's
-- (ucwa.session); events reach objects through its registry (ucwa.dispatch).
-- @module ucwa.client
local emitter = require "ucwa.emitter"
local errors = require "ucwa.errors"
local batch = require "ucwa.batch"
local invitation = require "ucwa.invitation"
local messaging = require "ucwa.messaging"
local meetings = require "ucwa.meetings"
local options = require "ucwa.options"
local people = require "ucwa.people"
local presence = require "ucwa.presence"
local resource = require "ucwa.resource"
local session = require "ucwa.session"
local subscription = require "ucwa.subscription"
local util = require "ucwa.util"
require "ucwa.conversation" -- registers the conversation, participant and message classes

local client = {}

local Client = {}
Client.__index = Client
Client.__name = "ucwa.client"

emitter.install(Client, "client", {
  ready = true, invitation = true, resumed = true, error = true, closed = true, event = true,
  restored = true,
})

--- Registers `fn` for a client event: `ready(client)`, `invitation(inv)`
-- (every incoming invitation: a meeting's, or a messagingInvitation, by `inv.rel`),
-- `resumed(info)`, `error(err)`, `closed(client)`, `event(event, sender)`
-- (every raw event of the event channel), `restored(info)` (with a store:
-- the session a previous process left carried on, instead of `ready`; see
-- docs/store.md). An unknown name raises. Returns the client.
-- @function Client:on
-- @string name
-- @tparam function fn

--- Removes a handler registered with `on`. Returns the client.
-- @function Client:off
-- @string name
-- @tparam function fn

--- The options of `ucwa.client{}` (ucwa.client(opts) calls client.new). Every
-- one is checked when the client is made: an unknown name raises with the
-- closest known one, and so does a wrong type or range.
-- @table options
-- @field url the autodiscover root URL (or give `domain`)
-- @field domain the SIP domain: LyncDiscoverInternal, then LyncDiscover, HTTPS first
-- @field username the sign-in name (password grant), with `password`
-- @field password its password; sent only to the token service
-- @field token a token string, or a function(url) returning one for the resource at url
-- @field anonymous a guest join: `{meeting = uri, key = conference id (default: from the uri), display_name =}`
-- @field format "json" (default) or "xml"
-- @field user_agent the application's userAgent (default "lua-ucwa/<version>")
-- @field culture the application's culture (default "en-US")
-- @field verify false turns TLS verification off (default true)
-- @field ca_file a CA bundle for a private CA
-- @field proxy an HTTP proxy URL, or false for none (default: libcurl's, from the environment)
-- @field max_body the largest response body accepted, in bytes
-- @field timeout seconds per request (default 30)
-- @field event_timeout the event channel's server-side timeout, seconds (default 180)
-- @field event_grace the client-side margin over event_timeout, seconds
-- @field aggregation the event channel's `{low =, medium =}` aggregation intervals, 5 to 1800 s
-- @field trusted_domains domains beyond the user's own where redirects may lead and the
-- password may go (hybrid: `{"online.lync.com"}`)
-- @field backoff the event channel's reconnection delays, `{initial =, max =}` seconds
-- @field activity_interval seconds between reportMyActivity (default 180)
-- @field available false skips makeMeAvailable (then no incoming invitations)
-- @field application_model "lean" (default: `client.application`'s links kept as templates shared
-- between bots, its embedded resources without their properties; ucwa.application) or "full"
-- (the application as the server sent it)
-- @field engine a shared ucwa.engine{}; verify, ca_file, proxy, max_body then belong to it
-- @field log function(level, message); never sees a token or a password
-- @field signin_attempts sign-in attempts before giving up on faults that may pass (default: no limit)
-- @field store a session store (`ucwa.store.sqlite(path)`): a restart carries on the same session
-- @field store_tokens true also stores the tokens (default false: a restart gets new ones)
-- @field store_key the identity the session is stored under (default: from username and url)

--- Makes a client from @{options}; a wrong option raises.
function client.new(opts)
  local o = options.client(opts, 3)
  local self = setmetatable({ format = o.format, anonymous = o.anonymous ~= nil, state = "new",
                              engine = o.engine }, Client)
  self._session = session.new(self, o)
  if o.verify == false then
    -- Anyone on the path can then read the password and the token: say so, once.
    local what = "TLS verification is off (verify = false): the server's certificate is not checked"
    self._session:log("warn", what)
    io.stderr:write("lua-ucwa: warning: ", what, "\n")
  end
  return self
end

function Client:__tostring()
  local s = self._session
  return "ucwa.client(" .. tostring(s.options.url or s.options.domain) .. ", " .. self.state .. ")"
end

-- ------------------------------------------------------------------------
-- Coroutines and timers

--- Runs fn(...) in a coroutine in which network methods may be called
-- without a callback: they yield and return result, err.
function Client:spawn(fn, ...)
  if type(fn) ~= "function" then error("bad argument #1 to 'spawn' (function expected)", 2) end
  return self._session.async:spawn(fn, ...)
end

--- Calls fn() once after `seconds`; returns the timer (`:cancel()`).
-- The client's timers end with it.
function Client:after(seconds, fn)
  if type(seconds) ~= "number" then error("bad argument #1 to 'after' (number expected)", 2) end
  if type(fn) ~= "function" then error("bad argument #2 to 'after' (function expected)", 2) end
  local s = self._session
  return s:after(seconds, function() s.call(fn) end)
end

-- ------------------------------------------------------------------------
-- Meetings

-- What an outgoing invitation is: its rel, the check of its arguments and
-- the properties it starts with (messaging.lua gives another kind).
local MEETING = {
  rel = "onlineMeetingInvitation",
  validate = invitation.validate,
  properties = function(body)
    return { subject = body.subject, onlineMeetingUri = body.onlineMeetingUri }
  end,
}

-- Starts an outgoing invitation (a meeting's, or `kind`'s) through link
-- `rel` of communication, or the href `kind.resolve(cb)` finds. Always
-- returns the invitation; a failure completes it with Failure.
function Client:_invite(rel, args, cb, what, kind)
  kind = kind or MEETING
  local s = self._session
  local body = {}
  for k, v in pairs(args) do body[k] = v end
  if kind == MEETING and self.anonymous and body.anonymousDisplayName == nil then
    body.anonymousDisplayName = s.options.display_name
  end
  local err = kind.validate(body, self.anonymous, what)
  body.operationId = body.operationId or util.operation_id()
  local props = kind.properties(body)
  props.operationId, props.direction = body.operationId, "Outgoing"
  local inv = resource.new(s, { rel = kind.rel, properties = props })
  local function post(href, done)
    s.registry:track(inv, body.operationId)
    s:send({ method = "POST", url = href, body = body }, function(model, e, resp)
      if e then
        inv:_fail(e)
        return done(inv, e)
      end
      if type(model) == "table" then inv:_update(model) end
      inv.href = inv.href or resp.headers.location
      s.registry:register(inv)
      inv:_check_cancel()
      done(inv)
    end)
  end
  local function start(done)
    local function go(href, e)
      e = err or e
      if not e and not href then
        e = errors.new{ code = "NotAllowed", subcode = "NotSignedIn",
                        message = "not signed in, or the server gives no " .. rel .. " link" }
      end
      if e then
        inv:_fail(e)
        return done(inv, e)
      end
      post(href, done)
    end
    if err or not kind.resolve then return go(resource.embedded_link(s.application, "communication", rel)) end
    kind.resolve(go)
  end
  -- in a spawned coroutine without a callback: inv, err once the server answered
  if not cb and s.async:current() then return s.async:await(start) end
  s.async:call(cb and function(i, e) if e then cb(nil, e) else cb(i) end end, start)
  return inv
end

--- Joins an online meeting: returns the onlineMeetingInvitation at once
-- (in a spawned coroutine without a callback: once the server answered,
-- `inv, err`). args: onlineMeetingUri (required), subject, importance,
-- threadId, operationId, anonymousDisplayName. cb(inv, err) when the server
-- answers; a failure also completes inv with Failure and inv.reason.
function Client:join_meeting(args, cb)
  if type(args) ~= "table" or type(args.onlineMeetingUri) ~= "string" then
    error("bad argument #1 to 'join_meeting' (table with onlineMeetingUri expected)", 2)
  end
  return self:_invite("joinOnlineMeeting", args, cb, "join_meeting")
end

--- Starts an ad hoc meeting: args subject, importance, threadId, operationId.
-- Returns the onlineMeetingInvitation as join_meeting does.
function Client:start_meeting(args, cb)
  if type(args) == "function" then args, cb = nil, args end
  if args ~= nil and type(args) ~= "table" then error("bad argument #1 to 'start_meeting' (table expected)", 2) end
  return self:_invite("startOnlineMeeting", args or {}, cb, "start_meeting")
end

--- Starts a one-to-one instant message conversation (startMessaging):
-- returns the messagingInvitation at once, as join_meeting does. args: `to`
-- (a sip: URI, required), `message` (the first message, text), `subject`,
-- `importance` ("Normal", "Urgent", "Emergency"), `threadId`, `operationId`.
-- Wrong arguments raise; a limit the reference states (subject 250,
-- operationId 50 characters) completes inv with Failure before anything is
-- sent. cb(inv, err) when the server answers. See ucwa.messaging.
function Client:start_messaging(args, cb)
  return messaging.start(self, args, cb)
end

-- ------------------------------------------------------------------------
-- Scheduled meetings, batching (ucwa.meetings, ucwa.batch)

--- Schedules an online meeting (myOnlineMeetings): args subject,
-- description, expirationTime, attendees, leaders (sip: URIs), accessLevel,
-- automaticLeaderAssignment, lobbyBypassForPhoneUsers, phoneUserAdmission,
-- entryExitAnnouncement. cb(meeting, err): a ucwa.meetings object with
-- onlineMeetingUri, joinUrl, onlineMeetingId, conferenceId and `dial_in`,
-- `update`, `delete`, `join`. Values outside the server's eligible values
-- fail with ParameterValidationFailure before anything is sent.
-- @tparam table args
-- @tparam[opt] function cb
function Client:schedule_meeting(args, cb)
  return meetings.schedule(self._session, args, cb)
end

--- The meetings this user has scheduled. cb(list, err).
-- @tparam[opt] function cb
function Client:meetings(cb)
  return meetings.list(self._session, cb)
end

--- The server's default values for new meetings. cb(properties, err).
-- @tparam[opt] function cb
function Client:meeting_defaults(cb)
  return meetings.defaults(self._session, cb)
end

--- The server's eligible values for meetings (accessLevels ...). cb(properties, err).
-- @tparam[opt] function cb
function Client:meeting_eligible_values(cb)
  return meetings.eligible(self._session, cb)
end

--- The admin policies for this user's meetings (onlineMeetingPolicies). cb(properties, err).
-- @tparam[opt] function cb
function Client:meeting_policies(cb)
  return meetings.policies(self._session, cb)
end

--- Runs fn(); the requests made in it go out as one multipart/batching POST
-- (see ucwa.batch), each answer to its own callback. cb(true, err) once the
-- batch was answered (in a spawned coroutine without cb: returns then).
-- @tparam function fn
-- @tparam[opt] function cb
function Client:batch(fn, cb)
  if type(fn) ~= "function" then error("bad argument #1 to 'batch' (function expected)", 2) end
  local s = self._session
  return s.async:call(cb, function(done)
    batch.run(s, fn, function(err) if err then done(nil, err) else done(true) end end)
  end)
end

--- The conversations going on (kept alive by the client while they last).
function Client:conversations()
  return self._session.registry:conversations()
end

-- ------------------------------------------------------------------------
-- Presence and people (ucwa.presence, ucwa.people, ucwa.subscription).
-- Network methods: an optional trailing cb(result, err), or in a spawned
-- coroutine without one, they return result, err.

--- The bot's presence: `{availability =, activity =}` (presence_ref.md).
-- @tparam[opt] function cb
function Client:presence(cb) return presence.get(self._session, cb) end

--- Sets the bot's availability: "Online", "Busy", "DoNotDisturb",
-- "BeRightBack", "Away" or "Offwork"; any other value raises. cb(true, err).
-- @string availability
-- @tparam[opt] function cb
function Client:set_presence(availability, cb) return presence.set(self._session, availability, cb) end

--- The bot's note: `{message =, type =}`.
-- @tparam[opt] function cb
function Client:note(cb) return presence.note(self._session, cb) end

--- Publishes the bot's note (`""` resets it). cb(true, err).
-- @string text
-- @tparam[opt] function cb
function Client:set_note(text, cb) return presence.set_note(self._session, text, cb) end

--- The bot's location: `{location =}`.
-- @tparam[opt] function cb
function Client:location(cb) return presence.location(self._session, cb) end

--- Sets the bot's location (at most 60 characters, else
-- ParameterValidationFailure and nothing sent). cb(true, err).
-- @string text
-- @tparam[opt] function cb
function Client:set_location(text, cb) return presence.set_location(self._session, text, cb) end

--- The `me` resource read again: `me.name`, `me.uri`, `me.title`,
-- `me.department`, `me.emailAddresses` ... (me_ref.md).
-- @tparam[opt] function cb
function Client:me(cb) return presence.me(self._session, cb) end

--- Searches the directory: a list of contact objects (ucwa.people) with
-- `list.moreResultsAvailable`; `opts.limit` 1 to 100.
-- @string query
-- @tparam[opt] table opts
-- @tparam[opt] function cb
function Client:search(query, opts, cb)
  if type(opts) == "function" then opts, cb = nil, opts end
  return people.search(self._session, query, opts, cb)
end

--- The contact list: a list of contact objects.
-- @tparam[opt] function cb
function Client:contacts(cb) return people.contacts(self._session, cb) end

--- The contact list's groups: group objects (`g.name`, `g:members()`).
-- @tparam[opt] function cb
function Client:groups(cb) return people.groups(self._session, cb) end

--- Subscribes to the presence of contacts (a list of contact objects or
-- "sip:" URIs) or of a group's members (a group object): a subscription
-- (ucwa.subscription), extended by the client before it lapses.
-- `opts.duration` minutes, 10 (default) to 30; `opts.extend = false` turns
-- the automatic extension off.
-- @tparam table members
-- @tparam[opt] table opts
-- @tparam[opt] function cb
function Client:subscribe(members, opts, cb)
  if type(opts) == "function" then opts, cb = nil, opts end
  if type(members) == "table" and getmetatable(members) == people.Group then
    return subscription.subscribe_group(self._session, members, opts, cb)
  end
  return subscription.subscribe(self._session, members, opts, cb)
end

-- ------------------------------------------------------------------------
-- The loop

--- Signs in and opens the event channel; "ready" fires when done.
function Client:start()
  self._session:start()
  return self
end

--- Runs ready work for up to `timeout` seconds (0: only what is ready).
-- Raises the next error no "error" handler took (a bot's callback error).
function Client:step(timeout)
  if timeout ~= nil and type(timeout) ~= "number" then error("bad argument #1 to 'step' (number expected)", 2) end
  if self._stepping then error("nested step: step/run called from a callback", 2) end
  self._stepping = true
  local ok, err = pcall(self.engine.step, self.engine, timeout or 0)
  self._stepping = false
  if not ok then error(err, 0) end
  -- one error per step; the others wait for the next step, none is dropped
  local deferred = self._session:next_deferred()
  if deferred then error(deferred, 0) end
  return self
end

--- Runs the loop until client:stop(), client:close() or client:release()
-- (or the store's lease lost: the state "stopped").
function Client:run()
  self._stopped = false
  while not self._stopped and self.state ~= "closed" and self.state ~= "stopped" do
    self:step(1)
  end
  return self
end

--- Stops driving the bot without signing out: the channel and every timer
-- stop, the application is left at the server for the process that carries
-- on from the store (a fleet's other worker). The state becomes "stopped".
function Client:release()
  self._session:release()
  self._stopped = true
  return self
end

--- Makes run() return.
function Client:stop()
  self._stopped = true
  return self
end

--- The descriptor a host loop polls for the client (the engine's epoll set).
-- @treturn integer
function Client:pollfd() return self.engine:pollfd() end
--- What to poll pollfd() for: always `"r"`.
-- @treturn string
function Client:events() return self.engine:events() end
--- Seconds until the client needs step() without I/O (a timer), or nil.
-- @treturn number|nil
function Client:timeout() return self.engine:timeout() end

--- Signs out: deletes the application, closes the channel, every timer and
-- (unless shared) the engine. cb(true, err).
function Client:close(cb)
  if cb ~= nil and type(cb) ~= "function" then error("bad argument #1 to 'close' (function expected)", 2) end
  local s = self._session
  if self.state == "closed" or self.state == "closing" then
    if cb then cb(true) end
    return
  end
  local finish = s:close(function(err)
    self._stopped = true
    s:emit("closed", self)
    if s.own_engine then self.engine:close() end
    if cb then cb(err == nil, err) end
  end)
  -- drive the DELETE to completion when nobody else is looping
  if self.state ~= "closed" and not self._stepping then
    local deadline = os.time() + 6
    while self.state ~= "closed" and os.time() <= deadline do
      -- a shared engine may be stepping already (close from another bot's callback)
      if not pcall(self.engine.step, self.engine, 0.2) then break end
    end
    if self.state ~= "closed" then finish() end
  end
end
Client.__close = Client.close
Client.__gc = function(self)
  local s = rawget(self, "_session")
  if self.state ~= "closed" and s and s.own_engine then self.engine:close() end
end

client.Client = Client

--- The client's option names and what each takes (see ucwa.options).
client.OPTIONS = options.CLIENT

return client
