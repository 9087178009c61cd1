-- ucwa-sim: authentication (AuthenticationInUCWA.md): the 401 with both
-- challenges in one WWW-Authenticate, the token endpoint (password and
-- anonymous meeting grants, ms_rtc_renew), and the tokens it issued.
--
-- A token record: { token=, identity=, anonymous=, meeting=, scopes=,
-- expires=, issued= }; identity is a directory user record, or for a guest
-- { username=, name=, uri=, anonymous=true }; meeting is the meeting id of an
-- anonymous token.  Other modules read these fields.
local host = require "ucwasim.host"
local config = require "config"
local directory = require "directory"
local meetings = require "meetings"
local reply = require "reply"
local timers = require "timers"

local M = {}

M.TOKEN_PATH = "/WebTicket/oauth/token"

local tokens = {} -- token -> record
local base = ""
local guest_seq = 0

local function challenge()
  return 'Bearer trusted_issuers="", client_id="00000004-0000-0ff1-ce00-000000000000", '
    .. 'MsRtcOAuth href="' .. base .. M.TOKEN_PATH .. '",'
    .. 'grant_type="urn:microsoft.rtc:windows,urn:microsoft.rtc:anonmeeting,password"'
end

local function unauthorized(diag)
  local h = { ["WWW-Authenticate"] = challenge(), ["Content-Type"] = "text/html",
    ["Cache-Control"] = "no-cache", ["X-MS-Server-Fqdn"] = "ucwa-sim.contoso.com", ["X-Ms-diagnostics"] = diag }
  return 401, h, "<html><head><title>401 - Unauthorized</title></head><body>"
    .. "<h2>401 - Unauthorized: Access is denied due to invalid credentials.</h2></body></html>"
end

-- The token record of a request, or nil and the 401 answer (packed).
function M.authenticate(req)
  local auth = req.headers.authorization
  local tok = auth and auth:match("^%s*[Bb][Ee][Aa][Rr][Ee][Rr]%s+(%S+)%s*$")
  local rec = tok and tokens[tok]
  if not rec then
    return nil, { unauthorized(tok and '28070;source="ucwa-sim";reason="The web ticket is invalid."') }
  end
  if rec.expires <= host.now() then
    return nil, { unauthorized('28032;source="ucwa-sim";reason="The web ticket has expired."') }
  end
  return rec
end

local function token_error(err, desc)
  return reply.json(400, { error = err, error_description = desc },
    { ["X-Ms-diagnostics"] = '28020;source="ucwa-sim";reason="' .. desc .. '"' })
end

local function issue(identity, anonymous, meeting, scopes)
  local tok = "cwt=AAEB" .. host.random(32)
  local life = config.get(anonymous and "anon-token-lifetime" or "token-lifetime")
  tokens[tok] = { token = tok, identity = identity, anonymous = anonymous, meeting = meeting,
    scopes = scopes, expires = host.now() + life, issued = host.now() }
  return reply.json(200, {
    access_token = tok,
    expires_in = math.floor(life),
    ms_rtc_identityscope = anonymous and "anonymous" or "local",
    token_type = "Bearer",
  })
end

-- POST /WebTicket/oauth/token (application/x-www-form-urlencoded)
function M.token_endpoint(req)
  if req.method ~= "POST" then
    return reply.json(405, { error = "invalid_request", error_description = "POST only" }, { Allow = "POST" })
  end
  if not req.form or req.form_bad then
    return token_error("invalid_request", "the body must be application/x-www-form-urlencoded")
  end
  local f = req.form
  if f.ms_rtc_renew and f.ms_rtc_renew ~= "" then
    local old = tokens[f.ms_rtc_renew]
    if not old then
      return token_error("invalid_grant", "unknown token to renew")
    end
    return issue(old.identity, old.anonymous, old.meeting, old.scopes)
  end
  local grant = f.grant_type
  if grant == "password" then
    local u = directory.user(f.username or "")
    if not u or f.password ~= u.password then
      return token_error("invalid_grant", "the user name or password is incorrect")
    end
    return issue(u, false, nil, u.scopes)
  elseif grant == "urn:microsoft.rtc:anonmeeting" then
    local m = meetings.find(f.ms_rtc_conferenceuri)
    if not m or not meetings.admits_guest(m, f.password) then
      return token_error("invalid_grant", "the conference or its key is not valid")
    end
    guest_seq = guest_seq + 1
    local key = "anon-" .. guest_seq .. "-" .. host.random(3)
    local identity = { username = key, name = "Guest", uri = "sip:" .. key .. "@anonymous.invalid",
      anonymous = true }
    return issue(identity, true, m.id, directory.anonymous_scopes())
  elseif grant == nil or grant == "" then
    return token_error("invalid_request", "grant_type is missing")
  end
  return token_error("unsupported_grant_type", "grant type not supported")
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

-- Starts the service: `base_url` for the challenge's token URL.  Tokens
-- expired for a day are forgotten (renewing them fails after that).
function M.start(base_url)
  base = base_url
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
