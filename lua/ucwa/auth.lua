--- Authentication: the WWW-Authenticate challenge and the token service.
-- @module ucwa.auth
local util = require "ucwa.util"

local auth = {}

--- Parses a WWW-Authenticate value into a list of challenges
-- `{ scheme = "MsRtcOAuth", params = { href = ..., grant_type = ... } }`.
-- Real servers put two challenges in one header (Bearer ..., MsRtcOAuth ...),
-- and href may be quoted or not.
function auth.parse_challenges(header)
  local challenges, current = {}, nil
  local s, pos, n = tostring(header or ""), 1, #tostring(header or "")
  while pos <= n do
    pos = s:find("[^%s,]", pos) or n + 1
    if pos > n then break end
    local token = s:match("^[^%s,=\"]+", pos)
    if not token then return nil, "malformed challenge at byte " .. pos end
    local after = pos + #token
    local eq = s:match("^%s*=%s*", after)
    if eq and current then
      local vpos = after + #eq
      local value
      if s:sub(vpos, vpos) == '"' then
        -- from one quote or backslash to the next (a token is ~1 KB: not a byte at a time)
        local buf, i = {}, vpos + 1
        while true do
          local j = s:find('["\\]', i)
          if not j then return nil, "unterminated quoted string at byte " .. vpos end
          buf[#buf + 1] = s:sub(i, j - 1)
          if s:byte(j) == 34 then i = j; break end -- the closing quote
          buf[#buf + 1] = s:sub(j + 1, j + 1) -- an escaped character
          i = j + 2
        end
        value, pos = table.concat(buf), i + 1
      else
        value = s:match("^[^,%s]*", vpos)
        pos = vpos + #value
      end
      current.params[token:lower()] = value
    elseif eq then
      return nil, "parameter before any scheme at byte " .. pos
    else
      current = { scheme = token, params = {} }
      challenges[#challenges + 1] = current
      pos = after
    end
  end
  return challenges
end

--- The MsRtcOAuth challenge of a header: token service URL and grant types.
function auth.oauth_challenge(header)
  local list, err = auth.parse_challenges(header)
  if not list then return nil, err end
  for _, c in ipairs(list) do
    if c.scheme:lower() == "msrtcoauth" then
      local grants = {}
      for g in (c.params.grant_type or ""):gmatch("[^,%s]+") do grants[g] = true end
      if not c.params.href then return nil, "MsRtcOAuth challenge without href" end
      return { href = c.params.href, grants = grants }
    end
  end
  return nil, "no MsRtcOAuth challenge in WWW-Authenticate"
end

--- The conference id of an anonymous-meeting URI (`...;gruu;opaque=app:conf:focus:id:<ID>`).
function auth.conference_id(meeting_uri)
  return tostring(meeting_uri or ""):match("opaque=app:conf:focus:id:([^;%s]+)")
end

--- Token request body for the client's credentials, or nil and a message.
-- `renew` is the old anonymous token, to keep the same anonymous identity.
function auth.token_request(opts, renew)
  if opts.anonymous then
    local a = opts.anonymous
    local key = a.key or auth.conference_id(a.meeting)
    if not key then return nil, "anonymous.meeting has no conference id and no anonymous.key was given" end
    local body = { { "grant_type", "urn:microsoft.rtc:anonmeeting" },
                   { "password", key }, { "ms_rtc_conferenceuri", a.meeting } }
    if renew then body[#body + 1] = { "ms_rtc_renew", renew } end
    return util.form_encode(body), "urn:microsoft.rtc:anonmeeting"
  end
  if opts.username then
    return util.form_encode{ { "grant_type", "password" }, { "username", opts.username },
                             { "password", opts.password or "" } }, "password"
  end
  return nil, "no credentials: give username and password, token, or anonymous"
end

return auth
