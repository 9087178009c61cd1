-- Host-loop integration: the engine driven only through pollfd()/events()/timeout()
-- and step(0) from another event loop (cqueues, luv). No blocking step.
local core = require "ucwa.core"
local util = require "support.peer_util"

-- a new engine, and a wrapper that only allows step(0) on it and counts the steps
local function strict()
  local eng = core.engine()
  local counter = { steps = 0 }
  local step = eng.step
  counter.step = function()
    counter.steps = counter.steps + 1
    return step(eng, 0)
  end
  return eng, counter
end

describe("host loop", function()
  local peer = util.use_peer()

  it("runs requests, timers and a channel from a cqueues loop", function()
    local cqueues = require "cqueues"
    local eng, s = strict()
    local got = { responses = 0, timers = {}, batches = {} }
    for i = 1, 20 do
      eng:request{ url = peer.base .. "/echo?i=" .. i, callback = function(r)
        if r and r.status == 200 then got.responses = got.responses + 1 end
      end }
    end
    eng:timer(0.05, function() got.timers[#got.timers + 1] = "a" end)
    eng:timer(0.02, function() got.timers[#got.timers + 1] = "b" end)
    local ch
    ch = eng:channel{ url = peer.base .. "/app/events?ack=1",
      on_batch = function(b)
        got.batches[#got.batches + 1] = util.batch_n(b)
        if #got.batches == 5 then ch:stop() end
      end }
    ch:start()
    local function finished()
      return got.responses == 20 and #got.timers == 2 and #got.batches == 5
    end
    local cq = cqueues.new()
    cq:wrap(function()
      local deadline = cqueues.monotime() + 10
      while not finished() and cqueues.monotime() < deadline do
        cqueues.poll(eng)               -- pollfd(), events(), timeout()
        s.step()
      end
    end)
    assert(cq:loop())
    assert.is_true(finished())
    assert.same({ "b", "a" }, got.timers)
    assert.same({ 1, 2, 3, 4, 5 }, got.batches)
    eng:close()
  end)

  it("does not spin while transfers wait (cqueues)", function()
    local cqueues = require "cqueues"
    local eng, s = strict()
    local done = false
    eng:request{ url = peer.base .. "/echo?delay=0.6", callback = function() done = true end }
    local cq = cqueues.new()
    cq:wrap(function()
      while not done do
        cqueues.poll(eng)
        s.step()
      end
    end)
    assert(cq:loop(5))
    assert.is_true(done)
    assert.is_true(s.steps < 15, "too many wakeups: " .. s.steps)
    eng:close()
  end)

  it("wakes on timers through pollfd alone (luv poll handle)", function()
    local uv = require "luv"
    local eng, s = strict()
    local got = { timers = {}, status = nil }
    eng:timer(0.03, function() got.timers[#got.timers + 1] = 1 end)
    eng:timer(0.06, function() got.timers[#got.timers + 1] = 2 end)
    eng:request{ url = peer.base .. "/echo", callback = function(r) got.status = r.status end }
    local poll = uv.new_poll(eng:pollfd())
    local guard = uv.new_timer()
    guard:start(5000, 0, function() uv.stop() end)
    poll:start(eng:events(), function()
      s.step()
      if #got.timers == 2 and got.status then uv.stop() end
    end)
    uv.run()
    poll:stop()
    poll:close()
    guard:close()
    uv.run("nowait")
    assert.same({ 1, 2 }, got.timers)
    assert.equal(200, got.status)
    eng:close()
  end)

  it("reports timeout() 0 while completions are queued, nil when idle", function()
    local eng = core.engine()
    assert.is_nil(eng:timeout())
    assert.equal("r", eng:events())
    assert.is_number(eng:pollfd())
    local n = 0
    eng:timer(0, function() n = n + 1 eng:timer(0, function() n = n + 1 end) end)
    assert.equal(1, eng:step(0))
    assert.equal(0, eng:timeout())   -- the second timer is due now
    assert.equal(1, eng:step(0))
    assert.equal(2, n)
    assert.is_nil(eng:timeout())
    eng:close()
  end)
end)
