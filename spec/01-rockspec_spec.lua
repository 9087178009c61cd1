-- The rockspec: a make build whose `make install` puts the whole module, the
-- Lua layer and the ucwa-sim command in the tree luarocks names, at the
-- version ucwa._VERSION says.
local helpers = require "helpers"

local function rockspec()
  local p = io.popen("ls ucwa-*.rockspec")
  local names = {}
  for l in p:lines() do names[#names + 1] = l end
  p:close()
  assert.equal(1, #names, "one rockspec expected: " .. table.concat(names, " "))
  local spec = {}
  assert(loadfile(names[1], "t", spec))()
  return spec, names[1]
end

describe("the rockspec", function()
  -- regression: the rockspec said scm-1 and ucwa._VERSION 0.1.0
  it("has the version of ucwa._VERSION and a real dependency list", function()
    local spec, name = rockspec()
    assert.equal("ucwa-" .. spec.version .. ".rockspec", name)
    assert.equal(require("ucwa")._VERSION, spec.version:match("^(.-)%-%d+$"))
    assert.is_nil(spec.source.url:find("invalid", 1, true))
    local deps = table.concat(spec.dependencies, ",")
    assert.matches("lua >= 5.4", deps)
    assert.matches("lua%-cjson", deps)
  end)

  -- regression: the rock installed no ucwa-sim, so a rock user had no simulator
  it("installs every Lua module, ucwa.core and the ucwa-sim command", function()
    local tree = os.tmpname()
    os.remove(tree)
    local ok = os.execute(("make -s install BUILD=%s INST_LIBDIR=%s/lib INST_LUADIR=%s/lua INST_BINDIR=%s/bin"
      .. " >/dev/null"):format(helpers.build, tree, tree, tree))
    assert.is_true(ok)
    local p = io.popen("ls lua/ucwa/*.lua")
    for f in p:lines() do
      local name = f:match("[^/]+$")
      assert.is_not_nil(io.open(tree .. "/lua/ucwa/" .. name), name .. " not installed")
    end
    p:close()
    assert.is_not_nil(io.open(tree .. "/lib/ucwa/core.so"), "core.so not installed")
    assert.is_not_nil(io.open(tree .. "/bin/ucwa-sim"), "ucwa-sim not installed")
    os.execute("rm -rf " .. tree)
  end)
end)
