-- Shared helpers for the specs: paths to the build and to the fixtures.
local helpers = {}

helpers.build = os.getenv("UCWA_BUILD") or "build"
-- The project's own copy of the UCWA reference samples (see its README.md).
helpers.fixtures = "spec/fixtures/ucwa-docs"
helpers.pages = helpers.fixtures .. "/pages"
helpers.sanitized = os.getenv("UCWA_SANITIZED") == "1"
-- The interpreter for child Lua processes: under `make check`, the sanitized one.
helpers.lua = os.getenv("UCWA_LUA") or "lua5.4"

function helpers.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- Runs Lua `code` in a child interpreter (helpers.lua, the sanitized one under
-- `make check`, which takes a script file, not -e) with the checkout's module
-- on its paths. `env` is put before the command (e.g. "env -u UCWA_SIM"),
-- `redirect` after it (default "2>&1"). Returns what it printed.
function helpers.run_lua(code, env, redirect)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(('package.path = "lua/?.lua;lua/?/init.lua;" .. package.path\n'
    .. 'package.cpath = %q .. "/?.so;" .. package.cpath\n'):format(helpers.build), code)
  f:close()
  local p = assert(io.popen(("%s %s %s %s"):format(env or "", helpers.lua, path, redirect or "2>&1")))
  local out = p:read("a")
  p:close()
  os.remove(path)
  return out
end

return helpers
