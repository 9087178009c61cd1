--- Error objects: tables with code, subcode, status, message and __tostring.
-- The C core makes the same kind (core.error); this module adds the Lua-side
-- constructors so every error a bot sees has one shape.
-- @module ucwa.errors
local core = require "ucwa.core"

local errors = {}

local fallback_mt = {
  __name = "ucwa.error",
  __tostring = function(e)
    local head = e.status and (tostring(e.status) .. " ") or ""
    local code = tostring(e.code or "Error")
    if e.subcode then code = code .. "/" .. tostring(e.subcode) end
    if e.message and e.message ~= "" then return head .. code .. ": " .. e.message end
    return head .. code
  end,
}

--- The metatable shared by all error objects.
errors.mt = core.error_mt or fallback_mt

--- Makes an error object from a table {code=, subcode=, status=, message=}.
function errors.new(t)
  if core.error then return core.error(t) end
  return setmetatable(t, errors.mt)
end

--- True when v is an error object.
function errors.is(v)
  return type(v) == "table" and getmetatable(v) == errors.mt
end

--- A ParameterValidationFailure, as the server would answer it.
function errors.validation(message)
  return errors.new{ status = 400, code = "BadRequest", subcode = "ParameterValidationFailure", message = message }
end

return errors
