--- Error objects: tables with code, subcode, status, message and __tostring.
-- The C core makes them (core.error); this module adds the Lua-side
-- constructors, so every error a bot sees has one shape.
-- @module ucwa.errors
local core = require "ucwa.core"

local errors = {}

--- The metatable shared by all error objects (the C core's).
errors.mt = core.error_mt

--- Makes an error object from a table {code=, subcode=, status=, message=}.
errors.new = core.error

--- True when v is an error object.
function errors.is(v)
  return type(v) == "table" and getmetatable(v) == errors.mt
end

--- A ParameterValidationFailure, as the server would answer it.
function errors.validation(message)
  return errors.new{ status = 400, code = "BadRequest", subcode = "ParameterValidationFailure", message = message }
end

return errors
