--- lua-ucwa: Skype for Business (UCWA 2.0) meeting bots in Lua.
-- @module ucwa
local core = require "ucwa.core"

local ucwa = { _VERSION = core._VERSION, core = core }

-- The C core's functions, re-exported as they are.
for _, name in ipairs{ "parse", "parse_events", "parse_error", "encode", "date", "set_limits",
                       "null", "error", "error_mt", "data_url" } do
  ucwa[name] = core[name]
end

--- Makes a client (see ucwa.client).
function ucwa.client(opts)
  return require("ucwa.client").new(opts)
end

--- A transport engine that several clients may share (option `engine`).
function ucwa.engine(opts)
  return core.engine(opts or {})
end

--- Error objects: ucwa.errors.new{...}, ucwa.errors.is(v).
ucwa.errors = require "ucwa.errors"

return ucwa
