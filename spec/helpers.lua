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

return helpers
