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
