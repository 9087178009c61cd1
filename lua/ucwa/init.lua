--- lua-ucwa: Skype for Business (UCWA 2.0) meeting bots in Lua.
-- @module ucwa

-- The C core is built for Lua 5.4: under another Lua it would fail with an
-- unhelpful "undefined symbol". (This check must parse under any Lua.)
if _VERSION ~= "Lua 5.4" then
  error("lua-ucwa needs Lua 5.4, and this is " .. tostring(_VERSION)
    .. " (on Debian, run lua5.4 and, for the specs, lua5.4 /usr/bin/busted)", 2)
end

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
-- Besides core.engine's options, `max_signins`: how many of its clients
-- sign in at once (default 64; ucwa.signin_gate).
function ucwa.engine(opts)
  opts = opts or {}
  local max = type(opts) == "table" and opts.max_signins
  if max == nil or max == false then return core.engine(opts) end
  if math.type(max) ~= "integer" or max < 1 then
    error("bad argument #1 to 'engine' (option 'max_signins' must be a whole number, 1 or more)", 2)
  end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.max_signins = nil
  local eng = core.engine(o)
  require("ucwa.signin_gate").limit(eng, max)
  return eng
end

--- Error objects: ucwa.errors.new{...}, ucwa.errors.is(v).
ucwa.errors = require "ucwa.errors"

--- Session stores for durable sessions: ucwa.store.sqlite(path, opts), ucwa.store.redis{...}.
ucwa.store = require "ucwa.store"

--- A worker of a fleet of bots on Redis (see ucwa.fleet): ucwa.fleet{ store =, bots = }.
function ucwa.fleet(opts)
  return require("ucwa.fleet").new(opts)
end

return ucwa
