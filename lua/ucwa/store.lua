--- Session stores (docs/store.md): where a client keeps what a restarted
-- process needs to carry on the same UCWA session. `ucwa.store.sqlite` is
-- embedded (libsqlite3, one file, WAL mode); `ucwa.store.redis` (the fleet's,
-- lua/ucwa/store_redis.lua) shares the state between processes and machines.
-- Both answer through callbacks, `done(result, err)`: SQLite before the method
-- returns, Redis later, from the engine's loop.
-- @module ucwa.store
local core = require "ucwa.core"
local errors = require "ucwa.errors"

local store = {}

local Sqlite = {}
Sqlite.__index = Sqlite
Sqlite.__name = "ucwa.store.sqlite"

--- The synchronous levels of `ucwa.store.sqlite`, weakest first: "off" (no
-- fsync: survives the process's crash, not the machine's), "normal" (the
-- default: fsync at WAL checkpoints; survives the process's crash, and a
-- power loss keeps the file consistent but may drop the last writes), "full"
-- (fsync on every commit: survives a power loss), "extra" (as full, and the
-- directory too).
store.SYNCHRONOUS = { "off", "normal", "full", "extra" }

local function check_identity(identity)
  if type(identity) ~= "string" or identity == "" then
    error("store: identity must be a non-empty string, got " .. type(identity), 3)
  end
end

local function check_done(done)
  if type(done) ~= "function" then error("store: done must be a function, got " .. type(done), 3) end
end

-- the C store's nil, msg-error into the callback; its raises are argument errors
local function answer(done, ok, err)
  if ok == nil then return done(nil, err) end
  return done(ok)
end

--- Opens (or creates) an SQLite store at `path`. `opts.synchronous`: one of
-- @{SYNCHRONOUS} (default "normal"); `opts.busy_timeout`: seconds to wait for
-- another process's write (default 5). Returns the store, or nil and an error
-- (a path that cannot be opened, a file that is not a database).
function store.sqlite(path, opts)
  if type(path) ~= "string" then error("ucwa.store.sqlite: path must be a string, got " .. type(path), 2) end
  if opts ~= nil and type(opts) ~= "table" then
    error("ucwa.store.sqlite: options must be a table, got " .. type(opts), 2)
  end
  local db, err = core.sqlite_open(path, opts)
  if not db then return nil, err end
  return setmetatable({ db = db, path = path, kind = "sqlite", async = false,
                        synchronous = opts and opts.synchronous or "normal" }, Sqlite)
end

--- Starts driving `identity`: done(fence). SQLite has no leases: the fence is 0.
function Sqlite:begin(identity, done) -- luacheck: no unused args
  check_identity(identity); check_done(done)
  return done(0)
end

--- Everything kept for `identity`: done({values =, inbox =}) or done(false).
function Sqlite:load(identity, done)
  check_identity(identity); check_done(done)
  return answer(done, self.db:load(identity))
end

--- One atomic write of `changes` (key -> string, or false to delete): done(true).
function Sqlite:set(identity, _fence, changes, done)
  check_identity(identity); check_done(done)
  return answer(done, self.db:write(identity, changes))
end

--- Adds batch `seq` with `data` to the inbox and applies `changes`, atomically: done(true).
function Sqlite:inbox_put(identity, _fence, seq, data, changes, done)
  check_identity(identity); check_done(done)
  return answer(done, self.db:write(identity, changes or {}, seq, data))
end

--- Marks batch `seq` done (it leaves the inbox): done(true).
function Sqlite:inbox_done(identity, _fence, seq, done)
  check_identity(identity); check_done(done)
  return answer(done, self.db:done(identity, seq))
end

--- Forgets everything kept for `identity`: done(true).
function Sqlite:clear(identity, _fence, done)
  check_identity(identity); check_done(done)
  return answer(done, self.db:clear(identity))
end

--- The value of PRAGMA `name` ("journal_mode", "synchronous", "user_version").
function Sqlite:pragma(name)
  return self.db:pragma(name)
end

--- Closes the database file; the store cannot be used after.
function Sqlite:close()
  self.db:close()
end

function Sqlite:__tostring()
  return "ucwa.store.sqlite (" .. self.path .. ")"
end

--- A Redis store for fleets (see lua/ucwa/store_redis.lua and docs/store.md).
function store.redis(opts)
  local ok, mod = pcall(require, "ucwa.store_redis")
  if not ok then
    return nil, errors.new{ code = "StoreError", message = "ucwa.store.redis is not available: " .. tostring(mod) }
  end
  return mod.new(opts)
end

--- True when `v` looks like a store (has every method docs/store.md names).
function store.is(v)
  if type(v) ~= "table" and type(v) ~= "userdata" then return false end
  for _, m in ipairs{ "begin", "load", "set", "inbox_put", "inbox_done", "clear" } do
    local ok, f = pcall(function() return v[m] end)
    if not ok or type(f) ~= "function" then return false end
  end
  return true
end

return store
