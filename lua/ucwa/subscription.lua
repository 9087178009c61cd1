--- Presence subscriptions (SubscribeToThePresenceOfSelectedContacts.md,
-- SubscribeToThePresenceOfAGroupOfContacts.md, ExtendAPresenceSubscription.md,
-- DeleteAPresenceSubscription.md, presenceSubscriptions_ref.md,
-- presenceSubscription_ref.md, presenceSubscriptionMemberships_ref.md).
--
-- While a subscription lasts the server reports its members' presence
-- changes on the event channel; the contact objects fire `presence`
-- (ucwa.people). A subscription lasts `duration` minutes (10 to 30); the
-- client extends it on a timer of the session's (so closing the client
-- stops it) a minute before it could lapse. Callbacks (`sub:on(name, fn)`):
-- `deleted(sub, why)` when it ends (`"expired"`: the server let it lapse,
-- `"deleted"`: @{Subscription:delete}), `updated`, `added`.
-- @module ucwa.subscription
local errors = require "ucwa.errors"
local people = require "ucwa.people"
local resource = require "ucwa.resource"

local subscription = {}

--- The shortest duration, in minutes (presenceSubscriptions_ref.md).
subscription.MIN_DURATION = 10
--- The longest duration, in minutes.
subscription.MAX_DURATION = 30

--- How many minutes before it could lapse the client extends a subscription.
subscription.MARGIN = 1

--- Seconds in a minute of a subscription's duration (specs against a
-- simulator whose minutes are shorter change it).
subscription.MINUTE = 60

local Subscription = resource.class("presenceSubscription", nil, { added = true, updated = true, deleted = true })
subscription.Subscription = Subscription
resource.register("presenceSubscription", Subscription)

-- The URIs of a list of members (contact objects or "sip:" strings), or raises.
local function uris_of(members, what)
  if type(members) ~= "table" then error("bad argument #1 to '" .. what .. "' (list of contacts expected)", 4) end
  if members.uri or members.href then members = { members } end -- one contact
  local uris, contacts = {}, {}
  for i, m in ipairs(members) do
    local uri = type(m) == "string" and m or (type(m) == "table" and m.uri)
    if type(uri) ~= "string" then
      error(("bad argument #1 to '%s' (member %d is neither a contact nor a URI)"):format(what, i), 4)
    end
    uris[i] = uri
    if type(m) == "table" then contacts[uri] = m end
  end
  return uris, contacts
end

-- A duration from opts, or raises (not an integer) / returns the refusal (out of range).
local function duration_of(opts, what)
  if opts ~= nil and type(opts) ~= "table" then error("bad argument #2 to '" .. what .. "' (table expected)", 4) end
  local d = opts and opts.duration or subscription.MIN_DURATION
  if math.type(d) ~= "integer" then error("bad argument #2 to '" .. what .. "' (duration must be an integer)", 4) end
  if d < subscription.MIN_DURATION or d > subscription.MAX_DURATION then
    return d, errors.validation(("duration must be %d to %d minutes"):format(subscription.MIN_DURATION,
      subscription.MAX_DURATION))
  end
  return d
end

-- Holds the contacts the bot gave (their presence events need the objects).
function Subscription:_hold(contacts)
  local held = rawget(self, "_contacts") or {}
  self._contacts = held
  for uri, c in pairs(contacts) do held[uri] = c end
end

-- The next extension, `MARGIN` minutes before the subscription could lapse:
-- after any extension at least `duration` minutes remain (the server adds
-- it to what is left, up to 30 minutes).
function Subscription:_arm()
  if not self.auto_extend or self.state ~= "active" then return end
  local session = self._session
  if self._timer then self._timer:cancel() end
  local wait = math.max(self.duration - subscription.MARGIN, 0.5) * subscription.MINUTE
  self._timer = session:after(wait, function()
    self._timer = nil
    if self.state ~= "active" then return end
    self:extend(function(_, err)
      if err then
        err.message = "extending the presence subscription: " .. tostring(err.message)
        session:report(err)
      end
    end)
  end)
end

function Subscription:_ended(why)
  if self.state ~= "active" then return end
  self.state = why
  if self._timer then self._timer:cancel(); self._timer = nil end
  self:_emit("deleted", why)
end

-- POSTs `body` (or `query`) to `href` and makes the subscription of the 201.
local function create(session, href, body, query, d, contacts, opts, done)
  session:send({ method = "POST", url = href, body = body, query = query }, function(model, err, resp)
    if not model then return done(nil, err) end
    if model == true then model = { rel = "presenceSubscription", href = resp.headers.location } end
    if not model.href then
      return done(nil, errors.new{ code = "BadResponse", message = "the presence subscription came without an href" })
    end
    local sub = session.registry:object(model, "presenceSubscription")
    sub.duration, sub.state = d, "active"
    sub.auto_extend = not (opts and opts.extend == false)
    sub:_hold(contacts)
    session.registry:track(sub) -- alive while it lasts
    sub:_arm()
    done(sub)
  end)
end

--- Subscribes to the presence of `members` (contact objects or `"sip:"`
-- URIs): cb(subscription, err). `opts.duration`: minutes, 10 (default) to
-- 30; `opts.extend = false`: no automatic extension. A duration out of
-- range fails with ParameterValidationFailure and sends nothing; members or
-- a duration of the wrong type raise.
-- @tparam table session
-- @tparam table members
-- @tparam[opt] table opts
-- @tparam[opt] function cb
function subscription.subscribe(session, members, opts, cb)
  local uris, contacts = uris_of(members, "subscribe")
  local d, refused = duration_of(opts, "subscribe")
  return session.async:call(cb, function(done)
    if refused then return done(nil, refused) end
    local href, err = people.people_link(session, "presenceSubscriptions")
    if not href then return done(nil, err) end
    create(session, href, { duration = d, uris = uris }, nil, d, contacts, opts, done)
  end)
end

--- Subscribes to the presence of a group's members (a group object of
-- ucwa.people): cb(subscription, err); `opts` as for @{subscribe}.
-- @tparam table session
-- @tparam table group
-- @tparam[opt] table opts
-- @tparam[opt] function cb
function subscription.subscribe_group(session, group, opts, cb)
  if type(group) ~= "table" or not group.link then error("bad argument #1 to 'subscribe' (group expected)", 3) end
  local d, refused = duration_of(opts, "subscribe")
  return session.async:call(cb, function(done)
    if refused then return done(nil, refused) end
    local href = group:link("subscribeToGroupPresence")
    if not href then
      return done(nil, errors.new{ code = "NotAllowed", subcode = "NoLink",
        message = "the group has no subscribeToGroupPresence link" })
    end
    create(session, href, nil, { duration = tostring(d) }, d, {}, opts, done)
  end)
end

local function gone(self)
  return errors.new{ code = "Gone", subcode = "SubscriptionEnded",
    message = "the presence subscription has ended (" .. tostring(self.state) .. ")" }
end

--- Adds members (contacts or URIs): cb(true, err).
-- @tparam table members
-- @tparam[opt] function cb
function Subscription:add(members, cb)
  local uris, contacts = uris_of(members, "add")
  local session = self._session
  return session.async:call(cb, function(done)
    if self.state ~= "active" then return done(nil, gone(self)) end
    local href = self:link("addToPresenceSubscription")
    if not href then return done(nil, errors.new{ code = "NotAllowed", subcode = "NoLink",
      message = "the subscription has no addToPresenceSubscription link" }) end
    self:_hold(contacts)
    session:send({ method = "POST", url = href, body = { contactUris = uris } }, function(_, err)
      if err then return done(nil, err) end
      done(true)
    end)
  end)
end

--- Removes a member (a contact object): its membership is found among the
-- subscription's memberships and deleted. cb(true, err).
-- @tparam table contact
-- @tparam[opt] function cb
function Subscription:remove(contact, cb)
  if type(contact) ~= "table" or not contact.href then error("bad argument #1 to 'remove' (contact expected)", 2) end
  local session = self._session
  return session.async:call(cb, function(done)
    if self.state ~= "active" then return done(nil, gone(self)) end
    local href = self:link("memberships")
    if not href then return done(nil, errors.new{ code = "NotAllowed", subcode = "NoLink",
      message = "the subscription has no memberships link" }) end
    local want = session:absolute(contact.href)
    session:send({ method = "GET", url = href }, function(model, err)
      if not model then return done(nil, err) end
      local found
      for _, m in ipairs(model ~= true and people.embedded_list(model, "presenceSubscriptionMembership")
                         or {}) do
        local c = resource.link(m, "contact")
        if c and session:absolute(c) == want then found = m.href end
      end
      if not found then
        return done(nil, errors.new{ code = "NotFound", subcode = "NotAMember",
          message = tostring(contact.uri or contact.href) .. " is not a member of the subscription" })
      end
      session:send({ method = "DELETE", url = found, raw = true }, function(_, e)
        if e then return done(nil, e) end
        local held = rawget(self, "_contacts")
        if held and contact.uri then held[contact.uri] = nil end
        done(true)
      end)
    end)
  end)
end

--- Extends the subscription by its duration (ExtendAPresenceSubscription.md);
-- the client does it on its own before the subscription could lapse. cb(true, err).
-- @tparam[opt] function cb
function Subscription:extend(cb)
  local session = self._session
  return session.async:call(cb, function(done)
    if self.state ~= "active" then return done(nil, gone(self)) end
    session:send({ method = "POST", url = self.href, query = { duration = tostring(self.duration) }, raw = true },
      function(_, err)
        if err then
          if err.status == 404 then self:_ended("expired") end
          return done(nil, err)
        end
        self.extensions = (self.extensions or 0) + 1
        self:_arm()
        done(true)
      end)
  end)
end

--- Deletes the subscription (DeleteAPresenceSubscription.md): no more
-- presence events from it. cb(true, err).
-- @tparam[opt] function cb
function Subscription:delete(cb)
  local session = self._session
  return session.async:call(cb, function(done)
    if self.state ~= "active" then return done(true) end
    session:send({ method = "DELETE", url = self.href, raw = true }, function(_, err)
      if err and err.status ~= 404 then return done(nil, err) end
      self:_ended("deleted")
      session.registry:untrack(self)
      done(true)
    end)
  end)
end

-- The session lost the application (the server forgot the subscription with it).
function Subscription:_fail()
  self:_ended("lost")
end

-- Events of the subscription: `deleted` when the server let it lapse.
function Subscription:_event(ev)
  if ev.resource then self:_update(ev.resource) end
  if ev.type == "deleted" then
    self:_ended("expired")
    self._session.registry:untrack(self)
  elseif ev.type == "updated" then
    self:_emit("updated")
  end
end

return subscription
