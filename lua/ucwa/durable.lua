--- Durable sessions: what a session writes to its store as it changes, and
-- how `client:start()` carries on a session a dead process left (docs/store.md).
-- The session calls in at a few points (sign-in done, each batch of the
-- event channel, conversations and operations starting and ending, tokens
-- got); everything else is here.
-- @module ucwa.durable
local cjson_mod = require "cjson"
local core = require "ucwa.core"
local application = require "ucwa.application"
local errors = require "ucwa.errors"
local resource = require "ucwa.resource"
local trust = require "ucwa.trust"

-- an instance of our own: settings that hold for stored values only
local cjson = cjson_mod.new()
cjson.encode_sparse_array(true)
cjson.decode_max_depth(200)

local durable = {}

local Durable = {}
Durable.__index = Durable

--- The identity a client's session is stored under (docs/store.md): the
-- `store_key` option, else one made of the sign-in name and the server.
-- @tparam table o the client's validated options
-- @treturn string
function durable.identity(o)
  if o.store_key then return o.store_key end
  if o.anonymous then return "anon:" .. o.anonymous.meeting .. "|" .. (o.anonymous.display_name or "") end
  return "user:" .. (o.username or "token") .. "@" .. (o.url or o.domain)
end

--- The durable part of `session`, with the client's validated options `o`.
function durable.new(session, o)
  -- a store with I/O of its own (Redis) runs on the client's engine
  if o.store.attach then o.store:attach(o.engine) end
  return setmetatable({
    session = session, store = o.store, identity = durable.identity(o),
    store_tokens = o.store_tokens == true,
    hosts = {},   -- origin -> { user =, applications = }
    seq = 0,      -- the last batch's seq, for servers whose URLs carry no ack
  }, Durable)
end

-- Numbers come back from JSON as floats: whole ones are integers again, as
-- the parser made them.
local function integers(v, depth)
  if type(v) == "table" and depth < 200 then
    for k, x in pairs(v) do
      if math.type(x) == "float" then
        v[k] = math.tointeger(x) or x
      elseif type(x) == "table" then
        integers(x, depth + 1)
      end
    end
  end
  return v
end

local function encode(v)
  return cjson.encode(v)
end

local function decode(s)
  local ok, v = pcall(cjson.decode, s)
  if not ok then return nil end
  return integers(v, 0)
end

-- The model of a resource object, as it is stored.
local function model_of(obj)
  local links, embedded = application.plain(obj)
  return { href = obj.href, rel = obj.rel, properties = obj.properties, links = links, embedded = embedded }
end

-- A store's error, for the bot: what failed, never a value.
function Durable:failed(err, what)
  if errors.is(err) and err.subcode == "LeaseLost" then return self:lease_lost(err) end
  if not errors.is(err) then
    err = errors.new{ code = "StoreError", message = "store " .. what .. ": " .. tostring(err) }
  end
  self.session:report(err)
end

-- Another worker owns the bot now: stop at once, write nothing more.
function Durable:lease_lost(err)
  if self.lost then return end
  self.lost = true
  self.session:log("warn", "lease of " .. self.identity .. " lost: stopping without a word to the server")
  self.session:release(err)
end

local function on_written(self, what)
  return function(_, err) if err then self:failed(err, what) end end
end

--- One atomic write of `changes` (key -> string, or false).
function Durable:set(changes)
  if self.lost then return end
  self.store:set(self.identity, self.fence, changes, on_written(self, "write"))
end

-- ------------------------------------------------------------------------
-- Writes as the session changes

--- The application was created (or read again): what a restart needs to find it.
function Durable:application_ready()
  local s = self.session
  local app = s.application
  local origin = s.applications_url and trust.origin(s.applications_url)
  if origin then self.hosts[origin] = { user = s.user_url, applications = s.applications_url } end
  local changes = {
    session = encode{ format = s.format, endpoint_id = s.client.endpoint_id, user_url = s.user_url,
                      applications_url = s.applications_url, base = s.base, https = s.policy.https == true },
    hosts = encode(self.hosts),
    application = encode(model_of(app)),
  }
  if self.app_href ~= s.base and self.app_href ~= nil then
    -- a new application: the old one's channel, inbox, conversations and operations are gone
    if not self.lost then self.store:clear(self.identity, self.fence, on_written(self, "clear")) end
  end
  self.app_href = s.base -- absolute: the same application whatever its href's form
  self:set(changes)
end

--- A conversation goes on (`on`) or ended.
function Durable:conversation(conv, on)
  local href = conv.href and self.session:absolute(conv.href)
  if not href then return end
  self:set{ ["conv:" .. href] = on and encode{ href = href, rel = conv.rel or "conversation" } or false }
end

-- The key of an operation: its operationId, else its href.
local function op_key(obj)
  local id = obj.properties and obj.properties.operationId
  return id and ("op:" .. id) or (obj.href and ("op:" .. obj.href)) or nil
end

--- An operation is in flight (`on`), or completed.
function Durable:operation(obj, on)
  local key = op_key(obj)
  if not key then return end
  local href = obj.href and self.session:absolute(obj.href)
  self:set{ [key] = on and encode{ href = href, rel = obj.rel, operation_id = obj.properties.operationId,
                                   properties = obj.properties } or false }
end

--- The tokens changed: stored only with `store_tokens = true`.
function Durable:tokens_changed()
  if not self.store_tokens then return end
  self:set{ tokens = encode(self.session.tokens:export()) }
  self.session:log("debug", "tokens stored") -- never their values
end

--- The client signed out (the application deleted): nothing left to carry on.
function Durable:closed()
  if self.lost then return end
  self.app_href = nil
  self.store:clear(self.identity, self.fence, on_written(self, "clear"))
end

-- ------------------------------------------------------------------------
-- The inbox

local function ack_of(url)
  local parts = url and core.url_parts(url)
  local q = parts and parts.query
  return q and math.tointeger(tonumber(("&" .. q .. "&"):match("&ack=(%d+)&")))
end

-- Positions as strings, made once: an id is two strings joined, no number
-- formatted (that was a microsecond and more of each event's latency)
local POSITION = {}
for i = 1, 64 do POSITION[i] = tostring(i) end

-- Gives each event of the batch its id: "seq:position" (`digits`: seq
-- written out, when the channel gave it); returns how many. On every
-- batch's path to the bot: the "seq:" prefix made once.
local function stamp(batch, seq, digits)
  local n, senders = 0, batch.senders
  if not senders then return 0 end
  local prefix
  local i, sender = 1, senders[1]
  while sender ~= nil do -- ipairs' walk, without a call per step
    local events = sender.events
    if events then
      prefix = prefix or (digits or seq) .. ":"
      local j, ev = 1, events[1]
      while ev ~= nil do
        n = n + 1
        ev.id = prefix .. (POSITION[n] or n)
        j = j + 1
        ev = events[j]
      end
    end
    i = i + 1
    sender = senders[i]
  end
  return n
end

-- The seq of a batch fetched from `url`: its ack, else the one after `last`.
-- `ack` is the event channel's reading of that ack (on_batch's third
-- argument): its digits (returned too), false (none), or nil (not known:
-- read here).
local function seq_of(url, ack, last)
  if ack then return tonumber(ack), ack end -- at most 18 digits: an integer
  if ack == nil then ack = ack_of(url) end
  return ack or (last + 1)
end

--- The seq of a batch fetched from `url` (its ack; else the one after
-- `last`), with each event's `ev.id` set: what a client without a store
-- does too. Returns the seq.
-- @tparam table batch
-- @string url
-- @int last
-- @param[opt] ack the channel's reading of the URL's ack (its digits; false: none)
function durable.stamp(batch, url, last, ack)
  local seq, digits = seq_of(url, ack, last)
  stamp(batch, seq, digits)
  return seq
end

--- A batch of the event channel (the channel holds it: hold = true): into
-- the inbox, then the channel released (the next P-GET acknowledges it),
-- the batch dispatched, and marked done.
function Durable:on_batch(batch, url, ack)
  local s = self.session
  local ch = s.channel
  local seq, digits = seq_of(url, ack, self.seq)
  self.seq = seq
  local n = stamp(batch, seq, digits)
  if n == 0 or self.lost then
    if ch and not self.lost then
      ch:release()
      -- an empty batch moves the server's ack on too: the stored URL follows,
      -- so a restart (or a fleet's takeover) carries on without a resync
      self:set{ channel = encode{ url = ch:url(), ack = seq } }
    end
    return s.registry:dispatch(batch)
  end
  local ok, data = pcall(encode, batch)
  local function release()
    if ch ~= s.channel or self.lost then return end
    local released, err = ch:release()
    if released == nil then s:log("warn", "event channel: " .. tostring(err)) end
  end
  if not ok then
    s:report(errors.new{ code = "StoreError", message = "a batch could not be stored: " .. tostring(data) })
    release()
    return s.registry:dispatch(batch)
  end
  local channel = encode{ url = ch and ch:url(), ack = seq }
  self.store:inbox_put(self.identity, self.fence, seq, data, { channel = channel }, function(_, err)
    -- a store that fails must not stop the bot: the batch goes on unstored
    if err then self:failed(err, "inbox") end
    release()
  end)
  -- the lease lost (known at once from a synchronous store): the batch is the new owner's
  if self.lost then return end
  s.registry:dispatch(batch)
  if not self.lost then self.store:inbox_done(self.identity, self.fence, seq, on_written(self, "inbox")) end
end

-- ------------------------------------------------------------------------
-- Restart

--- `client:start()` with a store: carries on the stored session, or signs
-- in (`fresh(on_ready)`: the session's usual sign-in).
function Durable:start(fresh)
  local s = self.session
  s:set_state("signing-in")
  self.store:begin(self.identity, function(fence, err)
    if err then
      s:set_state("new")
      return self:failed(err, "begin")
    end
    self.fence = fence
    self.store:load(self.identity, function(snap, lerr)
      if lerr then
        self:failed(lerr, "load")
        s:set_state("new")
        return fresh()
      end
      local v = {}
      for k, x in pairs(snap and snap.values or {}) do v[k] = decode(x) end
      if not (v.session and v.application and v.application.href and v.session.base) then
        s:set_state("new")
        return fresh()
      end
      s.async:spawn(function() s:gated(function() self:restore(snap, v, fresh) end) end)
    end)
  end)
end

-- In a session coroutine: GET the application; carry on with it, or sign in afresh.
function Durable:restore(snap, v, fresh)
  local s = self.session
  s:set_state("restoring")
  s.client.endpoint_id = v.session.endpoint_id or s.client.endpoint_id
  s.user_url, s.applications_url, s.base = v.session.user_url, v.session.applications_url, v.session.base
  s.policy.https = v.session.https == true
  self.hosts = type(v.hosts) == "table" and v.hosts or {}
  self.app_href = v.session.base
  if self.store_tokens and type(v.tokens) == "table" then s.tokens:import(v.tokens) end
  local delays = 0.5
  local model, err
  while s.state == "restoring" do
    model, err = s:fetch{ method = "GET", url = s.base, app = false }
    -- only faults that may pass are tried again: the network, timeouts, 5xx
    local passing = err and (err.status and (err.status >= 500 or err.status == 429)
      or (not err.status and (err.code == "NetworkError" or err.code == "Timeout")))
    if model or not passing then break end
    -- the server unreachable: the application may well live; try again
    if err then err.retrying = true; s:report(err) end
    s:sleep(delays)
    delays = math.min(delays * 2, 30)
  end
  if s.state ~= "restoring" then return end
  if not model or model == true then
    -- the server lost it (404), or will not give it: a fresh sign-in, and `resumed`
    s:log("info", "stored application gone (" .. tostring(err) .. "): signing in afresh")
    if not self.lost then self.store:clear(self.identity, self.fence, on_written(self, "clear")) end
    self.app_href = nil
    s:set_state("new")
    return fresh(function()
      s:emit("resumed", { reason = err and err.subcode or "ApplicationNotFound", error = err, restart = true })
    end)
  end
  s.application = resource.new(s, model)
  s.client.application = s.application
  -- the conversations and operations in flight, each read again
  local info = { application = s.base, conversations = {}, operations = {}, replayed = 0 }
  local pending = 0
  local wake
  local function one_done()
    pending = pending - 1
    if pending == 0 and wake then wake() end
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local x = v[k]
    if k:sub(1, 5) == "conv:" and type(x) == "table" and x.href then
      local conv = s.registry:object({ href = x.href, rel = x.rel or "conversation" }, x.rel or "conversation")
      info.conversations[#info.conversations + 1] = conv
      pending = pending + 1
      conv:refresh(function(_, e)
        if e then
          s:log("warn", "restoring conversation " .. x.href .. ": " .. tostring(e))
          if e.status == 404 then conv:_event{ type = "deleted", reason = e } end
        end
        one_done()
      end)
    elseif k:sub(1, 3) == "op:" and type(x) == "table" then
      local op = resource.new(s, { href = x.href, rel = x.rel, properties = x.properties or {} }, x.rel)
      s.registry:track(op, x.operation_id)
      if op.href then s.registry:register(op) end
      info.operations[#info.operations + 1] = op
      if op.href then
        pending = pending + 1
        op:refresh(function(_, e)
          if e and e.status == 404 then op:_fail(e) end
          one_done()
        end)
      end
    end
  end
  if pending > 0 then
    s.async:wait("restore", function(w) wake = w end)
  end
  if s.state ~= "restoring" then return end
  -- availability: the server may have kept it (reportMyActivity) or not
  if not s.anonymous and s.options.available then
    s:refresh_me()
    if resource.embedded_link(s.application, "me", "makeMeAvailable") then
      local ok, e = s:make_me_available()
      if not ok then s:report(e) end
    else
      s:schedule_activity()
    end
  end
  self:application_ready()
  s:set_state("ready")
  -- what the dead process had not dispatched: the handlers re-attached first
  local inbox = snap.inbox or {}
  info.replayed = #inbox
  s:emit("restored", info)
  for _, entry in ipairs(inbox) do
    local batch = decode(entry.data)
    if type(batch) == "table" then
      self.seq = math.max(self.seq, entry.seq)
      s.registry:dispatch(batch)
    else
      s:report(errors.new{ code = "StoreError", message = "stored batch " .. entry.seq .. " is unreadable; skipped" })
    end
    if not self.lost then self.store:inbox_done(self.identity, self.fence, entry.seq, on_written(self, "inbox")) end
  end
  if s.state ~= "ready" then return end
  local channel_url = type(v.channel) == "table" and v.channel.url or nil
  local ok, e = s:open_channel(channel_url)
  if not ok then s:report(e) end
end

return durable
