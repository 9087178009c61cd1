-- ucwa-sim: the event channel (EventsInUCWA.md, EventChannelDetails.md).
local C = require "support.sim_client"
local socket = require "socket"
local cjson = require "cjson"

local function titles(batch)
  local out = {}
  for _, e in ipairs(C.flat(batch)) do out[#out + 1] = tonumber(e.link.title) end
  return out
end

local function push(sim, s, n, prio)
  local status, r = sim:control("POST", "/_sim/apps/" .. s.app.props.id .. "/events",
    { count = n, priority = prio })
  assert.equal(200, status)
  return r
end

-- A session whose P-GET with `query` the simulator holds, and its socket.
local function held_pget(sim, query)
  local s = C.session(sim, "bob@contoso.com")
  local sock = s:raw_pget(query)
  socket.sleep(0.1)
  return s, sock
end

-- Holds a P-GET with query `a`, then sends a second with `b`: the loser
-- (`loser` 1 or 2) gets 409 PGetReplaced, the other 200.  Returns the 409 body.
local function two_pgets(sim, a, b, loser)
  local s, first = held_pget(sim, a)
  local second = s:raw_pget(b)
  local lose, win = first, second
  if loser == 2 then lose, win = second, first end
  local st, _, body = C.raw_receive(lose)
  assert.equal(409, st)
  local e = cjson.decode(body)
  assert.equal("PGetReplaced", e.subcode)
  assert.equal(200, (C.raw_receive(win)))
  first:close()
  second:close()
  return e
end

describe("ucwa-sim event channel", function()
  local sim
  C.use_sim(function(s) sim = s end)

  C.each_format(function(fmt)
    it("numbers batches with ack/next and gives the same batch to a retried URL", function()
      local s = C.session(sim, "bob@contoso.com", fmt)
      push(sim, s, 3)
      local first = s.events
      assert.matches("events%?ack=1$", first)
      local b1, st, raw1 = s:pget()
      assert.equal(200, st)
      assert.equal(C.path_of(first), b1.links.self)
      assert.matches("events%?ack=2$", b1.links.next)
      assert.same({ 1, 2, 3 }, titles(b1))
      assert.equal("me", b1.senders[1].rel)
      assert.equal("updated", b1.senders[1].events[1].type)
      assert.equal("note", b1.senders[1].events[1].link.rel)
      -- the connection "dropped": the same URL again gives the same batch
      s.events = first
      local _, _, raw2 = s:pget()
      assert.equal(raw1, raw2)
      -- next acknowledges it
      push(sim, s, 2)
      local b2 = s:pget()
      assert.same({ 4, 5 }, titles(b2))
      assert.matches("events%?ack=3$", b2.links.next)
    end)

    it("answers an out-of-range ack with only a resync link", function()
      local s = C.session(sim, "bob@contoso.com", fmt)
      local st, _, body = s:request("GET", s.app.href .. "/events?ack=57")
      assert.equal(200, st)
      local b = C.events_model(body, fmt)
      assert.is_nil(b.links.next)
      assert.equal(s.app.href .. "/events?ack=1", b.links.resync)
      assert.equal(0, #b.senders)
    end)

    it("releases an empty batch with a next link after the timeout", function()
      local s = C.session(sim, "bob@contoso.com", fmt)
      local t0 = socket.gettime()
      local b = s:pget("timeout=0.3")
      local dt = socket.gettime() - t0
      assert.is_true(dt >= 0.25 and dt < 2, "released after " .. dt)
      assert.equal(0, #b.senders)
      assert.matches("ack=2$", b.links.next)
    end)

    it("answers bad query parameters with ParameterValidationFailure", function()
      local s = C.session(sim, "bob@contoso.com", fmt)
      local st, _, body = s:request("GET", s.events .. "&timeout=soon")
      assert.equal(400, st)
      assert.equal("ParameterValidationFailure", C.error_model(body, fmt).subcode)
    end)
  end)

  it("replaces a pending P-GET with 409 PGetReplaced", function()
    local e = two_pgets(sim, "timeout=5", "timeout=0.3", 1)
    assert.equal("Conflict", e.code)
  end)

  it("names in its state whose P-GET replaced whose (the User-Agent: spec/63's fleet checks)", function()
    local s = C.session(sim, "bob@contoso.com")
    local function pget(agent, query)
      return C.raw_send(s.base, "GET", s.events .. "&" .. query,
        { Authorization = "Bearer " .. s.token, Accept = "application/json", ["User-Agent"] = agent })
    end
    local first = pget("worker-A", "timeout=5")
    socket.sleep(0.1)
    local second = pget("worker-B", "timeout=0.3")
    assert.equal(409, (C.raw_receive(first)))
    assert.equal(200, (C.raw_receive(second)))
    first:close()
    second:close()
    local _, st = sim:control("GET", "/_sim/state")
    local app
    for _, a in ipairs(st.applications) do if a.user == "bob@contoso.com" then app = a end end
    local runs = app.pget_agents
    assert.same({ "worker-A", "worker-B" }, { runs[#runs - 1].agent, runs[#runs].agent })
    assert.same({ replaced = "worker-A", by = "worker-B" }, app.replacements[#app.replacements])
  end)

  it("keeps a higher-priority P-GET over a lower-priority one", function()
    two_pgets(sim, "timeout=0.5&priority=5", "timeout=0.3&priority=1", 2)
  end)

  it("answers a pending P-GET with 404 ApplicationNotFound when the application goes", function()
    local s, p = held_pget(sim, "timeout=5")
    assert.equal(200, (sim:control("POST", "/_sim/apps/" .. s.app.props.id .. "/forget")))
    local st, _, b = C.raw_receive(p)
    assert.equal(404, st)
    assert.equal("ApplicationNotFound", cjson.decode(b).subcode)
    p:close()
  end)

  it("holds low-priority events for the 'low' interval", function()
    local s = C.session(sim, "bob@contoso.com")
    push(sim, s, 1, "low")
    local t0 = socket.gettime()
    local b = s:pget("low=0.4&timeout=3")
    local dt = socket.gettime() - t0
    assert.equal(1, #C.flat(b))
    assert.is_true(dt >= 0.35 and dt < 2, "released after " .. dt)
  end)

  it("drops P-GETs mid-response on request, and the retry gets the same events", function()
    local s = C.session(sim, "bob@contoso.com")
    push(sim, s, 2)
    assert.equal(200, (sim:control("POST", "/_sim/faults/drop-pget", { count = 1 })))
    local b, err = s:pget()
    assert.is_nil(b)
    assert.is_truthy(err == "closed" or err == nil or type(err) == "string")
    local again = s:pget()
    assert.same({ 1, 2 }, titles(again))
  end)

  it("forces resync and resume through the control API", function()
    local s = C.session(sim, "bob@contoso.com")
    local id = s.app.props.id
    push(sim, s, 1)
    s:pget()
    sim:control("POST", "/_sim/apps/" .. id .. "/resync")
    local b = s:pget()
    assert.is_nil(b.links.next)
    assert.matches("ack=2$", b.links.resync) -- the batch not yet acknowledged
    sim:control("POST", "/_sim/apps/" .. id .. "/resume")
    local r = s:pget()
    assert.is_nil(r.links.next)
    assert.is_string(r.links.resume)
    push(sim, s, 1)
    local n = s:pget() -- resume works like next
    assert.equal(1, #C.flat(n))
    assert.is_string(n.links.next)
  end)

  it("passes 10,000 events without losing or repeating one", function()
    local s = C.session(sim, "bob@contoso.com")
    push(sim, s, 10000)
    local got = {}
    local batches = 0
    while #got < 10000 do
      local b = s:pget("timeout=0.2")
      batches = batches + 1
      for _, t in ipairs(titles(b)) do got[#got + 1] = t end
      assert.is_true(batches < 100)
    end
    for i = 1, 10000 do assert.equal(i, got[i]) end
    local _, state = sim:control("GET", "/_sim/state")
    for _, a in ipairs(state.applications) do
      if a.id == s.app.props.id then assert.equal(0, a.queued) end
    end
  end)
end)

-- Regression: the queue was a Lua table with holes read with `#`; past 1,000
-- queued events (one batch) `#` could land on a hole, and the rest was lost
-- while the state said queued=0.
describe("ucwa-sim event queue beyond one batch", function()
  local sim
  C.use_sim(function(s) sim = s end)

  -- Bare P-GETs (JSON, no model) until `n` events arrived or a batch comes
  -- back empty; fails on a gap, a repeat or a reordering.  Returns the count.
  local function drain(s, first, n)
    local want = first
    for _ = 1, n // 1000 + 20 do
      local st, _, body = s:request("GET", s.events .. "&timeout=0.1")
      assert.equal(200, st)
      local b = cjson.decode(body)
      s.events = b._links.next.href
      local got = 0
      for _, sender in ipairs(b.sender or {}) do
        for _, e in ipairs(sender.events) do
          local t = tonumber(e.link.title)
          if t ~= want then error(("event %d where %d was due"):format(t, want), 0) end
          want = want + 1
          got = got + 1
        end
      end
      if got == 0 or want - first >= n then break end
    end
    return want - first
  end

  local function queued(s)
    local _, st = sim:control("GET", "/_sim/state")
    for _, a in ipairs(st.applications) do
      if a.id == s.app.props.id then return a.queued end
    end
  end

  it("delivers 100,000 queued events exactly once, in order", function()
    local s = C.session(sim, "bob@contoso.com")
    local r = push(sim, s, 100000)
    assert.equal(1, r.first)
    assert.equal(100000, r.last)
    assert.equal(100000, queued(s))
    assert.equal(100000, drain(s, 1, 100000))
    assert.equal(0, queued(s))
  end)

  it("loses nothing when events are queued while earlier ones drain", function()
    local s = C.session(sim, "bob@contoso.com")
    local next_title = 1
    for _ = 1, 30 do
      push(sim, s, 1700)
      assert.equal(1000, drain(s, next_title, 1000))
      next_title = next_title + 1000
    end
    assert.equal(30 * 700, queued(s))
    assert.equal(30 * 700, drain(s, next_title, 30 * 700))
    assert.equal(0, queued(s))
  end)
end)

describe("ucwa-sim resume after inactivity", function()
  it("answers with a resume link after --resume-after seconds without a P-GET", function()
    local sim = C.start({ resume_after = 0.3 })
    finally(function() sim:stop() end)
    local s = C.session(sim, "bob@contoso.com")
    push(sim, s, 1)
    local b = s:pget()
    assert.is_string(b.links.next)
    socket.sleep(0.5)
    local r = s:pget()
    assert.is_string(r.links.resume)
    assert.is_nil(r.links.next)
  end)
end)
