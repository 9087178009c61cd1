-- ucwa.sim, the Lua launcher of ucwa-sim: its options checked against what
-- the binary takes, a clear error when there is no binary, control requests
-- through the module's own transport.
local helpers = require "helpers"
local simmod = require "ucwa.sim"

describe("ucwa.sim.start{}", function()
  -- regression: a misspelt option went to the binary, which exited with a traceback
  it("raises on an option the simulator does not take, naming the closest one", function()
    local ok, err = pcall(simmod.start, { step_dealy = 0 })
    assert.is_false(ok)
    assert.matches("unknown option 'step_dealy' %(did you mean 'step_delay'%?%)", tostring(err))
    ok, err = pcall(simmod.start, { step_delay = {} })
    assert.is_false(ok)
    assert.matches("option 'step_delay' must be a string, a number or a boolean", tostring(err))
  end)

  -- regression: outside the checkout it failed without saying what to set
  it("says where it looked and what to set when there is no binary", function()
    local out = helpers.run_lua([[
      local ok, err = pcall(require("ucwa.sim").start, {})
      print(ok, err)]], "env -u UCWA_SIM UCWA_BUILD=/nonexistent PATH=/usr/bin:/bin")
    assert.matches("^false", out)
    assert.matches("ucwa%-sim not found", out)
    assert.matches("UCWA_SIM", out)
  end)

  it("controls the simulator through ucwa's own transport", function()
    local sim = simmod.start{ step_delay = 0 }
    local status, state = sim:control("GET", "/_sim/state")
    assert.equal(200, status)
    assert.is_table(state.applications)
    -- regression: the rock omitted luasocket, which ucwa.sim needed
    assert.is_nil(helpers.read("lua/ucwa/sim.lua"):find('require%s*%(?%s*"socket'))
    local ok = sim:stop()
    assert.is_true(ok)
  end)
end)
