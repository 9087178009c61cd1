-- The client inside a host's event loop (cqueues): driven only through
-- pollfd()/events()/timeout() and step(0), never run() or a blocking step.
local ucwa = require "ucwa"
local simmod = require "ucwa.sim"
local cqueues = require "cqueues"

describe("client in a cqueues loop", function()
  it("signs in and joins a meeting with only pollfd/timeout/step(0)", function()
    local sim = simmod.start{ step_delay = 0.01, auto_admit = true }
    finally(function() sim:stop() end)
    local client = ucwa.client{ url = sim.url, username = "bot@contoso.com", password = "password" }
    local steps, blocking, inv = 0, 0, nil
    local real_step = client.step
    client.step = function(self, t)
      if t ~= 0 then blocking = blocking + 1 end
      steps = steps + 1
      return real_step(self, t)
    end
    client:on("ready", function()
      inv = client:join_meeting{ onlineMeetingUri = "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:DEMO1" }
    end)
    client:start()
    assert.is_number(client:pollfd())
    assert.equal("r", client:events())

    local cq = cqueues.new()
    local deadline = cqueues.monotime() + 10
    cq:wrap(function()
      while not (inv and inv:completed()) and cqueues.monotime() < deadline do
        local t = client:timeout()
        cqueues.poll(client, math.min(t or 1, 1))
        client:step(0)
      end
    end)
    assert(cq:loop())
    assert.is_truthy(inv, "signed in")
    assert.equal("Success", inv.status)
    assert.equal(0, blocking)
    assert.is_true(steps > 1)
    -- idle: the loop wakes for nothing while the P-GET waits
    local wakeups = 0
    cq:wrap(function()
      local stop = cqueues.monotime() + 0.5
      while cqueues.monotime() < stop do
        local ready = cqueues.poll(client, 0.5)
        if ready == client then wakeups = wakeups + 1; client:step(0) end
      end
    end)
    assert(cq:loop())
    assert.is_true(wakeups <= 2, "woke " .. wakeups .. " times while idle")
    client:close()
  end)
end)
