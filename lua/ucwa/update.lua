--- Updating a resource with PUT (UpdateAnOnlineMeeting.md; the protocol facts
-- of the design): the whole representation goes back with the changes, with
-- `If-Match` carrying the etag the client last read and the resource's random
-- `"<guid>": "please pass this in a PUT request"` property echoed. A `412
-- PreconditionFailed` means someone changed the resource since: the object is
-- read again and the caller told, nothing is sent again on its own.
-- @module ucwa.update
local errors = require "ucwa.errors"

local update = {}

--- The value of the property a PUT must echo.
update.ECHO = "please pass this in a PUT request"

--- The name of the echo property of a resource object, or nil.
-- @tparam table obj
-- @treturn string|nil
function update.echo_name(obj)
  for k, v in pairs(obj.properties or {}) do
    if v == update.ECHO then return k end
  end
end

--- The etag the object was last read with (its ETag header, else its `etag`
-- property), or nil.
-- @tparam table obj
-- @treturn string|nil
function update.etag(obj)
  local e = rawget(obj, "_etag") or (obj.properties and obj.properties.etag)
  return e ~= nil and tostring(e) or nil
end

-- Keeps the ETag header of an answer (quotes and a weak prefix removed).
local function remember_etag(obj, resp)
  local h = resp and resp.headers and resp.headers.etag
  if type(h) == "string" then obj._etag = h:match('^%s*W?/?"?([^"]*)"?%s*$') end
end
update.remember_etag = remember_etag

--- PUTs `obj` with the properties `props` changed. cb(obj, err): on 412 the
-- object has been read again (err.code `PreconditionFailed`, err.refreshed
-- true) and nothing was overwritten; on any other failure obj is unchanged.
-- Argument errors raise; `props` must be a table of property names.
-- @tparam table obj a resource object (ucwa.resource)
-- @tparam table props
-- @tparam[opt] function cb
function update.put(obj, props, cb)
  if type(props) ~= "table" then error("bad argument #1 to 'update' (table expected)", 3) end
  for k in pairs(props) do
    if type(k) ~= "string" then error("bad argument #1 to 'update' (property names expected)", 3) end
  end
  local session = obj._session
  return session.async:call(cb, function(done)
    local etag = update.etag(obj)
    if not obj.href or not etag then
      return done(nil, errors.new{ code = "NotAllowed", subcode = "NoEtag",
        message = tostring(obj.rel) .. " has no href or etag: it cannot be updated with PUT" })
    end
    local body = {}
    for k, v in pairs(obj.properties) do body[k] = v end
    for k, v in pairs(props) do body[k] = v end
    session:send({ method = "PUT", url = obj.href, body = body,
                   headers = { ["If-Match"] = '"' .. etag .. '"' } }, function(model, err, resp)
      if err then
        if err.status ~= 412 then return done(nil, err) end
        -- changed on the server since it was read: read it again, report, never overwrite
        return obj:refresh(function(_, rerr)
          err.refreshed = rerr == nil
          err.message = "the " .. tostring(obj.rel) .. " changed on the server since it was read"
            .. (rerr and "" or "; it was read again") .. ", nothing was overwritten ("
            .. tostring(err.message) .. ")"
          done(nil, err)
        end)
      end
      remember_etag(obj, resp)
      if type(model) == "table" then obj:_update(model) end
      obj:_emit("updated")
      done(obj)
    end)
  end)
end

return update
