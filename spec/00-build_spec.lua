local helpers = require "helpers"

describe("the build", function()
  it("loads ucwa and its C core from the tree", function()
    local ucwa = require "ucwa"
    assert.is_table(ucwa.core)
    assert.is_string(ucwa._VERSION)
  end)

  it("builds the simulator binary", function()
    local f = io.open(helpers.build .. "/ucwa-sim", "rb")
    assert.is_not_nil(f)
    f:close()
  end)
end)

describe("require 'ucwa' under another Lua", function()
  -- regression: under Debian's `lua` (5.1) it failed with "undefined symbol: lua_rotate"
  it("fails with a message that says Lua 5.4 is needed", function()
    local f = io.popen("command -v lua5.1 || command -v lua5.3 || command -v lua5.2")
    local other = f:read("l")
    f:close()
    assert.is_not_nil(other, "no other Lua installed to try (lua5.1 is part of make deps)")
    local p = io.popen(("env LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='%s/?.so;;' %s -e 'require \"ucwa\"' 2>&1")
      :format(require("helpers").build, other))
    local out = p:read("a")
    p:close()
    assert.matches("lua%-ucwa needs Lua 5%.4, and this is Lua 5%.%d", out)
    assert.is_nil(out:find("undefined symbol", 1, true))
  end)
end)
