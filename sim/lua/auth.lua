-- ucwa-sim: authentication (AuthenticationInUCWA.md), one token service a
-- host: the 401 with both challenges in one WWW-Authenticate (the host's
-- own MsRtcOAuth href), the token endpoint (password and anonymous meeting
-- grants, ms_rtc_renew), and the tokens issued.  A token is good only on
-- the host whose token service issued it.
--
-- A token record: { token=, host= (the issuing host's name), identity=,
-- anonymous=, meeting=, scopes=, expires=, issued= }; identity is a
-- directory user record, or for a guest { username=, name=, uri=,
-- anonymous=true }; meeting is the meeting id of an anonymous token.
-- Other modules read these fields.
--
-- Renewal (ms_rtc_renew=<token>) proves as much as a new grant: the body
-- carries a grant that succeeds on its own (a password grant of the same
-- user, or the anonymous grant of the same meeting: password = its key),
-- and the token to renew must be one this service issued to that identity
-- (expired ones too, for a day).  The answer keeps the old identity (the
-- same guest for anonymous tokens).
local host = require "ucwasim.host"
local config = require "config"
local credentials = require "credentials"
local directory = require "directory"
local meetings = require "meetings"
local pages = require "pages"
local plants = require "plants"
local reply = require "reply"
local timers = require "timers"

local M = {}

-- The path the challenges announce: real pools' with a topology, the
-- simulator's own for a single host (as it always did); both are served.
local TOKEN_PATH = { pools = "/WebTicket/oauthtoken", single = "/WebTicket/oauth/token" }
local TOKEN_PATHS = { ["/webticket/oauthtoken"] = true, ["/webticket/oauth/token"] = true }
local token_path = TOKEN_PATH.single

local tokens = {} -- token -> record
local guest_seq = 0

function M.is_token_path(path)
  local c = path:byte(2) -- "/W" or "/w": only those are lowercased and looked up
  return (c == 87 or c == 119) and TOKEN_PATHS[path:lower()] == true
end

local function challenge(h)
  return 'Bearer trusted_issuers="", client_id="00000004-0000-0ff1-ce00-000000000000", '
    .. 'MsRtcOAuth href="' .. plants.href("challenge", h.base .. token_path, h) .. '",'
    .. 'grant_type="urn:microsoft.rtc:windows,urn:microsoft.rtc:anonmeeting,password"'
end

local function unauthorized(h, diag)
  local hd = { ["WWW-Authenticate"] = challenge(h), ["Content-Type"] = "text/html",
    ["Cache-Control"] = "no-cache", ["X-MS-Server-Fqdn"] = h.name,
    ["X-Ms-diagnostics"] = diag and pages.diagnostics(diag[1], diag[2], h) or nil }
  return 401, hd, "<html><head><title>401 - Unauthorized</title></head><body>"
    .. "<h2>401 - Unauthorized: Access is denied due to invalid credentials.</h2></body></html>"
end

-- The Bearer token of a request (read once: counting and authentication
-- both ask), or false.
local function bearer(req)
  local b = req.bearer
  if b == nil then
    local a = req.headers.authorization
    b = a and a:match("^%s*[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$") or false
    req.bearer = b
  end
  return b
end

-- Who issued the token of a request's Authorization header: the host name,
-- false for a header without a token any host issued, nil without one.
function M.issuer(req)
  if req.headers.authorization == nil then return nil end
  local rec = tokens[bearer(req) or ""]
  return rec and rec.host or false
end

-- The token record of a request to host `h`, or nil and the 401 answer
-- (packed): no token, another host's, unknown or expired.
function M.authenticate(req, h)
  local tok = bearer(req)
  local rec = tok and tokens[tok]
  if not rec or rec.host ~= h.name then
    return nil, { unauthorized(h, tok and { 28070, "The web ticket is invalid." }) }
  end
  if rec.expires <= host.now() then
    return nil, { unauthorized(h, { 28032, "The web ticket has expired." }) }
  end
  return rec
end

local function token_error(h, status, err, desc)
  credentials.refused(h)
  return reply.json(status, { error = err, error_description = desc },
    { ["X-Ms-diagnostics"] = pages.diagnostics(28020, desc, h) })
end

local function issue(h, identity, anonymous, meeting, scopes)
  local tok = "cwt=AAEB" .. host.random(32)
  local life = config.get(anonymous and "anon-token-lifetime" or "token-lifetime")
  tokens[tok] = { token = tok, host = h.name, identity = identity, anonymous = anonymous, meeting = meeting,
    scopes = scopes, expires = host.now() + life, issued = host.now() }
  return reply.json(200, {
    access_token = tok,
    expires_in = math.floor(life),
    ms_rtc_identityscope = anonymous and "anonymous" or "local",
    token_type = "Bearer",
  })
end

local function present(v)
  return v ~= nil and v ~= ""
end

-- Counts a token-service body that reached `h` (insecure: over plain HTTP).
function M.count_grant(req, h, insecure)
  local f = req.form or {}
  local grant = f.grant_type
  local kind, who = "other", nil
  if grant == "password" then
    kind, who = "password", directory.normalize(f.username)
  elseif grant == "urn:microsoft.rtc:anonmeeting" then
    kind, who = "anonymous", f.ms_rtc_conferenceuri
  end
  credentials.grant(h, kind, present(f.ms_rtc_renew), who, insecure)
end

-- What a grant proves: { identity=, anonymous=, meeting=, scopes= } (no
-- identity yet for a new guest), or nil and the refusal (packed).
local function prove(h, f)
  local grant = f.grant_type
  if grant == "password" then
    local u = directory.user(f.username or "")
    if not u or f.password ~= u.password then
      return nil, { token_error(h, 400, "invalid_grant", "the user name or password is incorrect") }
    end
    return { identity = u, anonymous = false, scopes = u.scopes }
  elseif grant == "urn:microsoft.rtc:anonmeeting" then
    local m = meetings.find(f.ms_rtc_conferenceuri)
    if not m or not meetings.admits_guest(m, f.password) then
      return nil, { token_error(h, 400, "invalid_grant", "the conference or its key is not valid") }
    end
    return { anonymous = true, meeting = m.id, scopes = directory.anonymous_scopes() }
  elseif not present(grant) then
    return nil, { token_error(h, 400, "invalid_request", "grant_type is missing") }
  end
  return nil, { token_error(h, 400, "unsupported_grant_type", "grant type not supported") }
end

-- POST /WebTicket/oauthtoken on host `h` (application/x-www-form-urlencoded)
function M.token_endpoint(req, h)
  if req.method ~= "POST" then
    return reply.json(405, { error = "invalid_request", error_description = "POST only" }, { Allow = "POST" })
  end
  M.count_grant(req, h, false)
  if req.too_many_fields then
    return token_error(h, 400, "invalid_request", "too many form fields")
  end
  if not req.form or req.form_bad then
    return token_error(h, 400, "invalid_request", "the body must be application/x-www-form-urlencoded")
  end
  local f = req.form
  local g, refusal = prove(h, f)
  if not g then return table.unpack(refusal) end
  if present(f.ms_rtc_renew) then
    local old = tokens[f.ms_rtc_renew]
    if not old or old.host ~= h.name then
      return token_error(h, 400, "invalid_grant", "unknown token to renew")
    end
    if old.anonymous ~= g.anonymous or (g.anonymous and old.meeting ~= g.meeting)
        or (not g.anonymous and old.identity ~= g.identity) then
      return token_error(h, 400, "invalid_grant", "the token to renew was issued to another identity")
    end
    return issue(h, old.identity, old.anonymous, old.meeting, old.scopes)
  end
  local identity = g.identity
  if g.anonymous then
    guest_seq = guest_seq + 1
    local key = "anon-" .. guest_seq .. "-" .. host.random(3)
    identity = { username = key, name = "Guest", uri = "sip:" .. key .. "@anonymous.invalid", anonymous = true }
  end
  return issue(h, identity, g.anonymous, g.meeting, g.scopes)
end

-- Expires tokens now: `token`, or every token of `username`, or all.
-- Returns how many.
function M.expire(token, username)
  local n = 0
  for tok, rec in pairs(tokens) do
    if (token == nil and username == nil) or token == tok or (username and rec.identity.username == username) then
      rec.expires = host.now() - 1
      n = n + 1
    end
  end
  return n
end

function M.count()
  local n = 0
  for _ in pairs(tokens) do n = n + 1 end
  return n
end

-- Starts the service (pools: a topology's hosts, which announce real
-- pools' token path).  Tokens expired for a day are forgotten (renewing
-- them fails after that).
function M.start(pools)
  token_path = pools and TOKEN_PATH.pools or TOKEN_PATH.single
  local function prune()
    local limit = host.now() - 86400
    for tok, rec in pairs(tokens) do
      if rec.expires < limit then tokens[tok] = nil end
    end
    timers.after(600, prune)
  end
  timers.after(600, prune)
end

return M
