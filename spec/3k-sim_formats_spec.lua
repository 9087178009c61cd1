-- ucwa-sim's formats.lua on its own: the one GUID form the simulator writes
-- (an application's endpointId and PUT echo property, a scheduled meeting's).
local fmt = assert(loadfile("sim/lua/formats.lua"))()

describe("ucwa-sim formats", function()
  it("writes 32 hex digits as a GUID, 8-4-4-4-12", function()
    assert.equal("0123abcd-4567-89ef-0123-456789abcdef", fmt.uuid("0123abcd456789ef0123456789abcdef"))
  end)
end)
