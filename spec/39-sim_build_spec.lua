-- ucwa-sim: the built-in Lua copy is current, and --help documents every option.
local helpers = require "helpers"

local function capture(cmd)
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local ok, _, code = p:close()
  return out, ok, code
end

describe("ucwa-sim build", function()
  it("embeds the current sim/sim_*.lua (run lua5.4 sim/embed.lua sim/sim_script.h sim/sim_*.lua)", function()
    local files = capture("ls sim/sim_*.lua")
    local list = {}
    for f in files:gmatch("%S+") do list[#list + 1] = f end
    assert.is_true(#list >= 4)
    local out, ok = capture("env -u LD_PRELOAD lua5.4 sim/embed.lua --check sim/sim_script.h "
      .. table.concat(list, " ") .. " 2>&1")
    assert.is_true(ok, out)
  end)

  it("documents every option in --help and exits 0", function()
    local out, ok = capture(helpers.build .. "/ucwa-sim --help")
    assert.is_true(ok)
    local src = helpers.read("sim/main.c")
    local n = 0
    for name in src:gmatch('{"([%a%-]+)", [%a_]+, 0, [%w\']+}') do
      assert.matches("%-%-" .. name:gsub("%-", "%%-"), out)
      n = n + 1
    end
    assert.is_true(n >= 15)
  end)

  it("refuses unknown options with exit status 2", function()
    local _, ok, code = capture(helpers.build .. "/ucwa-sim --no-such-option 2>/dev/null")
    assert.is_falsy(ok)
    assert.equal(2, code)
  end)
end)
