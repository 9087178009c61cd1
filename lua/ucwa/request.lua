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

--- Sends one request for `session`; calls done(model_or_true, err, response).
--
-- `spec`: `method`, `url` (absolute, or relative to the application),
-- `body` (a table, encoded in the session's format) or `raw_body` with
-- `content_type`, `query` (parameters added with the URL builder), `accept`,
-- `auth` (false: no token), `raw` (no parsing of the answer), `timeout`,
-- `app` (false: a 404 ApplicationNotFound here is not the application lost).
-- @tparam table session
-- @tparam table spec
-- @tparam function done
function request.send(session, spec, done, retried)
  if session.state == "closed" then
    return done(nil, errors.new{ code = "Closed", message = "client is closed" })
  end
  local url, why = session:absolute(spec.url)
  if url and spec.query then url, why = core.url_with_query(url, spec.query) end
  if not url then
    -- a link from the server that no URL parser accepts
    return done(nil, errors.new{ code = "BadResponse", subcode = "BadLink", message = tostring(why) })
  end
  local headers = { Accept = spec.accept or session.accept }
  if spec.auth ~= false then headers["X-MS-RequiresMinResourceVersion"] = request.MIN_RESOURCE_VERSION end
  local body, ctype = spec.raw_body, spec.content_type
  if spec.body ~= nil then body, ctype = core.encode(spec.body, session.format) end
  if ctype then headers["Content-Type"] = ctype end
  local token = spec.auth ~= false and session:authorization(url)
  if token then headers.Authorization = token end
  session:log("debug", spec.method .. " " .. url)
  session.engine:request{
    method = spec.method, url = url, headers = headers, body = body or (spec.method == "POST" and "" or nil),
    timeout = spec.timeout or session.options.timeout,
    callback = function(resp, terr)
      if not resp then return done(nil, terr) end
      local status = resp.status
      session:log("debug", spec.method .. " " .. url .. " -> " .. status)
      if status == 401 and token and not retried and session:can_renew() then
        return session:renew_token(function(ok, err)
          if not ok then return done(nil, err, resp) end
          request.send(session, spec, done, true)
        end)
      end
      if token and status < 400 then session:token_accepted() end
      local rtype = resp.headers["content-type"]
      if status >= 400 then
        local err = core.parse_error(resp.body, rtype, status)
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
