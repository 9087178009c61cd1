-- The rockspec builds what the tree has: every C source and Lua module.
describe("ucwa-scm-1.rockspec", function()
  local spec = {}
  setup(function()
    local chunk = assert(loadfile("ucwa-scm-1.rockspec", "t", spec))
    chunk()
  end)

  local function listing(cmd)
    local out = {}
    local p = assert(io.popen(cmd))
    for line in p:lines() do out[#out + 1] = line end
    p:close()
    return out
  end

  it("compiles every src/*.c into ucwa.core", function()
    local listed = {}
    for _, f in ipairs(spec.build.modules["ucwa.core"].sources) do listed[f] = true end
    for _, f in ipairs(listing("ls src/*.c")) do assert.is_true(listed[f], f .. " is not in the rockspec") end
  end)

  it("installs every Lua module of lua/ucwa", function()
    local listed = {}
    for _, f in pairs(spec.build.modules) do if type(f) == "string" then listed[f] = true end end
    for _, f in ipairs(listing("ls lua/ucwa/*.lua")) do assert.is_true(listed[f], f .. " is not in the rockspec") end
  end)
end)
