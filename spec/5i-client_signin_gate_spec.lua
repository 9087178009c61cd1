-- Sign-ins on one shared engine go in turns (ucwa.engine's max_signins,
-- default 64): a fleet starting at once neither bursts the server nor
-- scatters the heap with the peak's freed pieces (issue 16).
local ucwa = require "ucwa"
local helpers = require "helpers"
local gate = require "ucwa.signin_gate"

describe("sign-in turns on a shared engine", function()
  local sim
  setup(function() sim = helpers.sim{} end)
  teardown(function() sim:stop() end)

  local function bots(eng, n)
    local list, order = {}, {}
    for i = 1, n do
      local c = ucwa.client{ url = sim.url, username = "bot@contoso.com", password = "password", engine = eng,
                             available = false }
      c:on("ready", function() order[#order + 1] = i end)
      list[i] = c
    end
    return list, order
  end

  -- Steps the engine until done(); the most clients seen signing in at once.
  local function run(eng, list, done)
    local most = 0
    local deadline = os.time() + 20 * helpers.SLOW
    while not done() do
      eng:step(0.01)
      local n = 0
      for _, c in ipairs(list) do if c.state == "signing-in" then n = n + 1 end end
      most = math.max(most, n)
      assert(os.time() < deadline, "timed out")
    end
    return most
  end

  it("signs in one at a time with max_signins = 1, first come first served", function()
    local eng = ucwa.engine{ max_signins = 1 }
    local list, order = bots(eng, 5)
    for _, c in ipairs(list) do c:start() end
    local most = run(eng, list, function() return #order == 5 end)
    assert.equal(1, most)
    assert.same({ 1, 2, 3, 4, 5 }, order)
    for _, c in ipairs(list) do c:close() end
    eng:close()
  end)

  it("lets the default number sign in together, and no more", function()
    local eng = ucwa.engine{}
    local list, order = bots(eng, gate.LIMIT + 16)
    for _, c in ipairs(list) do c:start() end
    local most = run(eng, list, function() return #order == #list end)
    assert.is_true(most > 1 and most <= gate.LIMIT, "at most " .. most .. " at once")
    for _, c in ipairs(list) do c:close() end
    eng:close()
  end)

  it("passes the turn on when a waiting client or the one signing in is closed", function()
    local eng = ucwa.engine{ max_signins = 1 }
    local list, order = bots(eng, 4)
    for _, c in ipairs(list) do c:start() end
    eng:step(0)
    assert.equal("signing-in", list[1].state)
    list[3]:close() -- waiting: leaves the queue
    list[1]:close() -- signing in: gives its turn up
    run(eng, list, function() return #order == 2 end)
    assert.same({ 2, 4 }, order)
    assert.equal("closed", list[1].state)
    assert.equal("closed", list[3].state)
    list[2]:close()
    list[4]:close()
    eng:close()
  end)

  it("holds one turn for a sign-in inside a restore until both leave; a close gives it up at once", function()
    local eng = {} -- the gate only keys on it
    gate.limit(eng, 1)
    local a = { engine = eng, state = "new" }
    local b = { engine = eng, state = "new", async = require("ucwa.async").new(error) }
    assert.is_true(gate.enter(a)) -- the restore
    assert.is_true(gate.enter(a)) -- the fresh sign-in it fell back to
    local got
    b.async:spawn(function() got = gate.enter(b) end)
    assert.is_nil(got) -- b waits its turn
    gate.leave(a)
    assert.is_nil(got, "the inner leave gave the turn away")
    gate.leave(a)
    assert.is_true(got)
    local c = { engine = eng, state = "new", async = b.async }
    got = nil
    b.async:spawn(function() got = gate.enter(c) end)
    assert.is_true(gate.enter(b)) -- b again, nested
    gate.leave(b, true) -- closed: all of it
    assert.is_true(got)
    gate.leave(c)
  end)

  it("refuses a max_signins that is not a whole number, 1 or more", function()
    for _, bad in ipairs{ 0, -1, 1.5, "4" } do
      assert.has_error(function() ucwa.engine{ max_signins = bad } end,
        "bad argument #1 to 'engine' (option 'max_signins' must be a whole number, 1 or more)")
    end
  end)
end)
