--- One request of a session: the URL resolved against the application, the
-- body encoded in the session's format, the token for its origin, one token
-- renewal on a 401, and the answer parsed into a model or an error object.
-- @module ucwa.request
local core = require "ucwa.core"
local errors = require "ucwa.errors"

local request = {}

--- The resource version the client asks for on every UCWA request
-- (Versioning.md: X-MS-RequiresMinResourceVersion); a server that cannot
-- honour it answers 404 APIVersionNotSupported.
request.MIN_RESOURCE_VERSION = "2"

-- X-Ms-diagnostics: `28055;reason="The OAuth token is invalid.";source="pool2..."`.
-- Returns {code=, reason=, source=} or nil.
function request.diagnostics(header)
  if type(header) ~= "string" then return nil end
  local code = header:match("^%s*(%d+)")
  if not code then return nil end
  local d = { code = tonumber(code) }
  for k, v in header:gmatch(';%s*(%a+)%s*=%s*"([^"]*)"') do d[k] = v end
  return d
end

-- Diagnostics codes of a token the server refused, whatever the status:
-- 28055 "The OAuth token is invalid." (403), 28032 "The web ticket is
-- invalid." (500, with an IIS page).
local TOKEN_REFUSED = { [28055] = true, [28032] = true }

-- A refused token, as servers say it: a 401 (with or without a challenge:
-- IIS answers its own HTML page), or a diagnostics code of a bad token.
local function token_refused(status, diag)
  return status == 401 or (diag ~= nil and TOKEN_REFUSED[diag.code] == true)
end

--- Sends one request for `session`; calls done(model_or_true, err, response).
--
-- `spec`: `method`, `url` (absolute, or relative to the application),
-- `body` (a table, encoded in the session's format) or `raw_body` with
-- `content_type`, `query` (parameters added with the URL builder), `accept`,
-- `auth` (false: no token), `raw` (no parsing of the answer), `timeout`,
-- `app` (false: a 404 ApplicationNotFound here is not the application lost),
-- `headers` (more request headers: If-Match). Inside client:batch a request
-- to the batch link's origin goes in the batch (ucwa.batch), after the same checks.
-- The trust rules (ucwa.trust) are checked first: a URL they refuse fails
-- with Forbidden and nothing is sent.
-- @tparam table session
-- @tparam table spec
-- @tparam function done
function request.send(session, spec, done, tried)
  tried = tried or {}
  if session.state == "closed" then
    return done(nil, errors.new{ code = "Closed", message = "client is closed" })
  end
  local url, why = session:absolute(spec.url)
  if url and spec.query then url, why = core.url_with_query(url, spec.query) end
  if not url then
    -- a link from the server that no URL parser accepts
    return done(nil, errors.new{ code = "BadResponse", subcode = "BadLink", message = tostring(why) })
  end
  local refused = session.policy:check(url)
  if refused then
    session:log("warn", spec.method .. " " .. url .. " refused: " .. refused.message)
    return done(nil, refused)
  end
  local tokens = session.tokens
  local authed = spec.auth ~= false
  local token = authed and tokens:authorization(url)
  if authed and not token and tokens:mintable() and not tried.renewed then
    -- a token of the bot's own (a string, or its function of the URL): no challenge needed
    return tokens:renew(url, function(ok, err)
      if not ok then return done(nil, err) end
      request.send(session, spec, done, { renewed = true })
    end)
  end
  if authed and not token and not tried.renewed and not tried.unshared and tokens:renewable()
     and not tokens:has_service(url) and tokens:adopt(url) then
    -- the token service another bot of the engine was sent to: no 401 first;
    -- when it fails, the origin's own 401 says where to go
    return tokens:renew(url, function(ok)
      if not ok then
        tokens:unadopt(url)
        return request.send(session, spec, done, { unshared = true })
      end
      request.send(session, spec, done, { renewed = true })
    end)
  end
  local headers = { Accept = spec.accept or session.accept }
  if authed then headers["X-MS-RequiresMinResourceVersion"] = request.MIN_RESOURCE_VERSION end
  local body, ctype = spec.raw_body, spec.content_type
  if spec.body ~= nil then body, ctype = core.encode(spec.body, session.format) end
  if ctype then headers["Content-Type"] = ctype end
  if token then headers.Authorization = token end
  for k, v in pairs(spec.headers or {}) do headers[k] = v end
  session:log("debug", spec.method .. " " .. url)
  local engine = session.batching and session.batching:takes(url) or session.engine
  engine:request{
    method = spec.method, url = url, headers = headers, body = body or (spec.method == "POST" and "" or nil),
    timeout = spec.timeout or session.options.timeout,
    callback = function(resp, terr)
      if not resp then return done(nil, terr) end
      local status = resp.status
      session:log("debug", spec.method .. " " .. url .. " -> " .. status)
      local diag = status >= 400 and request.diagnostics(resp.headers["x-ms-diagnostics"]) or nil
      if authed and not tried.renewed and token_refused(status, diag) then
        -- this origin's challenge names its token service (a pool is not the discovery host)
        if status == 401 and resp.headers["www-authenticate"] then
          local ok, cerr = tokens:challenge(url, resp)
          if not ok then return done(nil, cerr, resp) end
        end
        if tokens:renewable() and (tokens:has_service(url) or tokens:mintable()) then
          return tokens:renew(url, function(ok, err)
            if not ok then return done(nil, err, resp) end
            request.send(session, spec, done, { renewed = true })
          end)
        end
      end
      if token and status < 400 then tokens:accepted() end
      local rtype = resp.headers["content-type"]
      if status >= 400 then
        local err = core.parse_error(resp.body, rtype, status)
        err.diagnostics = diag
        if diag and token_refused(status, diag) then
          err.code, err.subcode = "Unauthorized", err.subcode or "InvalidToken"
          err.message = "the server refused the token: " .. tostring(diag.reason or diag.code)
        end
        if err.subcode == "APIVersionNotSupported" then
          err.message = "the server cannot honour resource version " .. request.MIN_RESOURCE_VERSION
            .. " (X-MS-RequiresMinResourceVersion): it is older than Skype for Business Server 2015, or failed"
            .. " over to such a server" .. (err.message and (" (" .. tostring(err.message) .. ")") or "")
        end
        if (err.subcode == "ApplicationNotFound" or err.subcode == "InactiveApplicationExpired")
           and spec.app ~= false then
          session:application_lost(err)
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

return request
