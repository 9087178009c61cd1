--- A session's tokens: one per origin (scheme, host, port), got from the
-- token service that origin's `MsRtcOAuth` challenge names (real home pools
-- are not the discovery host: the first request to a pool answers 401 with
-- the pool's own challenge), or from the bot's token function, called with
-- the URL of the resource the token is for. The trust policy (ucwa.trust)
-- decides where the password may be posted. Secrets never leave this module's
-- weak table: no object a bot can print or dump holds one.
-- @module ucwa.tokens
local cjson = require "cjson.safe"
local auth = require "ucwa.auth"
local shared = require "ucwa.shared_discovery"
local core = require "ucwa.core"
local errors = require "ucwa.errors"
local trust = require "ucwa.trust"

local tokens = {}

--- Fresh tokens the servers may refuse in a row before the session stops
-- asking (each one after a doubling wait: 1, 2, 4 ... s): against a real
-- directory an endless loop of password grants locks the account.
tokens.MAX_REFUSED = 4

local secrets = setmetatable({}, { __mode = "k" })

local Tokens = {}
Tokens.__index = Tokens

--- The tokens of `session`, with the credentials `creds` ({password=,
-- token=, anonymous=}) and the sign-in name `username`.
function tokens.new(session, creds, username)
  local self = setmetatable({ session = session, username = username, services = {}, renewing = {} }, Tokens)
  secrets[self] = { password = creds.password, token = creds.token, anonymous = creds.anonymous, by_origin = {} }
  return self
end

local function origin_of(url)
  return trust.origin(url) or url
end

--- The Authorization header for a request to `url`: the token of its origin, or nil.
function Tokens:authorization(url)
  local t = secrets[self].by_origin[origin_of(url)]
  return t and (t.type .. " " .. t.value)
end

--- True when a token can be had for `url` without a challenge (a token
-- option: a string, or a function of the URL).
function Tokens:mintable()
  return secrets[self].token ~= nil
end

--- True when a refused token can be replaced.
function Tokens:renewable()
  local s = secrets[self]
  return s.token ~= nil or s.anonymous ~= nil or self.username ~= nil
end

--- A request with a token got through: the tokens work.
function Tokens:accepted()
  self.refused = nil
end

--- Takes the `MsRtcOAuth` challenge of a 401 from `url`: the token service
-- of that origin. Returns true, or nil and an error object (the challenge
-- is malformed, or names a token service the trust rules refuse).
function Tokens:challenge(url, resp)
  local c, why = auth.oauth_challenge(resp.headers["www-authenticate"])
  if not c then return nil, errors.new{ status = resp.status, code = "Unauthorized", message = why, url = url } end
  local service, rerr = core.url_resolve(url, c.href)
  if not service then return nil, errors.new{ code = "BadResponse", subcode = "BadLink", message = tostring(rerr) } end
  local refused = self.session.policy:check_token_service(service)
  if refused then return nil, refused end
  self.services[origin_of(url)] = service
  shared.set_service(self.session.engine, origin_of(url), service)
  return true
end

--- Takes the token service another bot of the engine was given for the
-- origin of `url` (ucwa.shared_discovery), when this bot's trust rules
-- allow it: its grant then needs no 401 first. True when taken.
function Tokens:adopt(url)
  local origin = origin_of(url)
  local service = shared.service(self.session.engine, origin)
  if not service or self.session.policy:check_token_service(service) then return false end
  self.services[origin] = service
  return true
end

--- Forgets an adopted token service that failed (for this bot and the
-- engine's others): the next try asks the origin again.
function Tokens:unadopt(url)
  local origin = origin_of(url)
  self.services[origin] = nil
  shared.set_service(self.session.engine, origin, nil)
  self.refused = nil -- a wrong service refused no token of ours
end

--- True when the origin of `url` has a known token service.
function Tokens:has_service(url)
  return self.services[origin_of(url)] ~= nil
end

local function store(self, origin, token_type, value)
  secrets[self].by_origin[origin] = { type = token_type, value = value }
  if self.session.durable then self.session.durable:tokens_changed() end
  local ch = self.session.channel
  if ch and origin_of(ch:url()) == origin then ch:set_header("Authorization", self:authorization(ch:url())) end
end

--- The tokens by origin, and the token services: for a store that keeps
-- them (`store_tokens = true`); nothing else may see this.
function Tokens:export()
  local out = { tokens = {}, services = {} }
  for origin, t in pairs(secrets[self].by_origin) do out.tokens[origin] = { type = t.type, value = t.value } end
  for origin, url in pairs(self.services) do out.services[origin] = url end
  return out
end

--- Takes back what `export` gave (a restart with `store_tokens = true`).
function Tokens:import(t)
  if type(t.tokens) == "table" then
    for origin, tok in pairs(t.tokens) do
      if type(origin) == "string" and type(tok) == "table" and type(tok.type) == "string"
         and type(tok.value) == "string" then
        secrets[self].by_origin[origin] = { type = tok.type, value = tok.value }
      end
    end
  end
  if type(t.services) == "table" then
    for origin, url in pairs(t.services) do
      if type(origin) == "string" and type(url) == "string" then self.services[origin] = url end
    end
  end
end

--- Gets a token for the origin of `url`, for the first time or again.
-- done(true) or done(nil, err). Renewals that follow each other without a
-- token getting through in between wait 1, 2, 4 ... s and stop after
-- MAX_REFUSED with `TokenRefused`.
function Tokens:renew(url, done)
  local origin = origin_of(url)
  local waiting = self.renewing[origin]
  if waiting then
    waiting[#waiting + 1] = done
    return
  end
  self.renewing[origin] = { done }
  local refused = (self.refused or 0) + 1
  self.refused = refused
  if refused > tokens.MAX_REFUSED then
    local err = errors.new{ status = 401, code = "Unauthorized", subcode = "TokenRefused",
      message = "the server refused " .. tokens.MAX_REFUSED .. " fresh tokens in a row; not asking again" }
    err.retrying = false
    return self:finish(origin, nil, err)
  end
  if refused > 1 then
    local wait = 2 ^ (refused - 2)
    self.session:log("warn", "token refused again: renewing in " .. wait .. " s")
    return self.session:after(wait, function() self:grant(url, origin) end, "grant " .. origin)
  end
  self:grant(url, origin)
end

function Tokens:finish(origin, ok, err)
  local waiters = self.renewing[origin] or {}
  self.renewing[origin] = nil
  for _, fn in ipairs(waiters) do fn(ok, err) end
end

-- Gets a token for `origin` now (for the resource at `url`).
function Tokens:grant(url, origin)
  local s = secrets[self]
  if type(s.token) == "function" then
    local ok, tok = pcall(s.token, url)
    if not ok or type(tok) ~= "string" then
      return self:finish(origin, nil, errors.new{ code = "Unauthorized",
                                                  message = "token function failed for " .. url })
    end
    store(self, origin, "Bearer", tok)
    return self:finish(origin, true)
  elseif type(s.token) == "string" then
    store(self, origin, "Bearer", s.token)
    return self:finish(origin, true)
  end
  local service = self.services[origin]
  if not service then
    return self:finish(origin, nil, errors.new{ status = 401, code = "Unauthorized",
      message = "no token service known for " .. origin .. " (it sent no MsRtcOAuth challenge)" })
  end
  local old = s.anonymous and s.by_origin[origin] and s.by_origin[origin].value or nil
  local body, grant = auth.token_request({ username = self.username, password = s.password,
                                          anonymous = s.anonymous }, old)
  if not body then return self:finish(origin, nil, errors.new{ code = "BadRequest", message = grant }) end
  self.session:send({ method = "POST", url = service, raw_body = body, auth = false, raw = true, app = false,
                      content_type = "application/x-www-form-urlencoded;charset=UTF-8", accept = "application/json" },
    function(ok, err, resp)
      if not ok then
        if resp and resp.status < 500 then
          -- The token service's own error shape: {"error": "invalid_grant", ...}; no secrets in it.
          local j = cjson.decode(resp.body or "")
          err = errors.new{ status = resp.status, code = "Unauthorized",
                            subcode = type(j) == "table" and j.error or nil,
                            message = grant .. " grant refused by the token service " .. service }
        end
        return self:finish(origin, nil, err)
      end
      local j = cjson.decode(resp.body or "")
      if type(j) ~= "table" or type(j.access_token) ~= "string" then
        return self:finish(origin, nil, errors.new{ status = resp.status, code = "BadResponse",
                                                    message = "token service answered without access_token" })
      end
      store(self, origin, j.token_type or "Bearer", j.access_token)
      self.session.client.token_scope = j.ms_rtc_identityscope
      self:schedule(url, origin, tonumber(j.expires_in))
      self:finish(origin, true)
    end)
end

-- Renews the token of `origin` a little before it expires.
function Tokens:schedule(url, origin, expires_in)
  if not expires_in then return end
  local ahead = math.min(300, expires_in / 10)
  self.session:after(math.max(1, expires_in - ahead), function()
    self:renew(url, function(ok, err)
      if not ok then self.session:report(err) end
    end)
  end, "renew " .. origin)
end

return tokens
