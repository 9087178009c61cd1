-- ucwa-sim and durable sessions: an application outlives its client's
-- process until it idles out (--app-idle), a restarted client carries on
-- from the ack it had (the unacknowledged batch again, byte for byte; an
-- older ack: resync to the first unacknowledged batch, EventChannelDetails.md).
local C = require "support.sim_client"
local cjson = require "cjson"
local socket = require "socket"

local eventually = C.eventually

-- A P-GET on its own connection, in the session's format, not waited for.
local function raw_pget(s, href, query)
  return C.raw_send(s.base, "GET", C.path_of(href) .. "&" .. query,
    { Authorization = "Bearer " .. s.token, Accept = C.ACCEPT[s.fmt] })
end

local function push(sim, s, n)
  assert.equal(200, (sim:control("POST", "/_sim/apps/" .. s.app.props.id .. "/events", { count = n })))
end

local function titles(batch)
  local t = {}
  for _, e in ipairs(C.flat(batch)) do t[#t + 1] = tonumber(e.link.title) end
  return t
end

-- The same user and endpoint signing in again from a new process.
local function restart(sim, s)
  return C.session(sim, "bot@contoso.com", s.fmt, { input = { userAgent = "bot/2", endpointId = "ep-durable",
    culture = "en-US" } })
end

describe("ucwa-sim across a client's restart", function()
  local sim
  C.use_sim_each(function(x) sim = x end, { app_idle = 30, pget_timeout = 60 })

  C.each_format(function(fmt)
    it("keeps the application and the events queued while nobody listened", function()
      local s = restart(sim, { fmt = fmt })
      push(sim, s, 3)
      assert.same({ 1, 2, 3 }, titles(assert(s:pget("timeout=1"))))
      local sock = raw_pget(s, s.events, "timeout=60")
      assert.is_true(eventually(function() return sim:state().pgets_held == 1 end))
      sock:close() -- the process dies with its P-GET held
      assert.is_true(eventually(function() return sim:state().pgets_held == 0 end))
      push(sim, s, 2)
      local again = restart(sim, s)
      assert.equal(s.app.props.id, again.app.props.id)
      assert.equal(s.events, again.events) -- the ack it had: batch 2 is the next one
      assert.same({ 4, 5 }, titles(assert(again:pget("timeout=1"))))
    end)

    it("gives the batch its dead client never read again, byte for byte", function()
      local s = restart(sim, { fmt = fmt })
      local sock = raw_pget(s, s.events, "timeout=60")
      assert.is_true(eventually(function() return sim:state().pgets_held == 1 end))
      push(sim, s, 2) -- answered into a connection nobody reads
      assert.is_true(eventually(function() return sim:state().pgets_held == 0 end))
      local status, _, first = C.raw_receive(sock)
      sock:close()
      assert.equal(200, status)
      local again = restart(sim, s)
      assert.equal(s.events, again.events)
      local batch, _, body = again:pget("timeout=1")
      assert.equal(first, body)
      assert.same({ 1, 2 }, titles(batch))
    end)

    it("answers an older ack with a resync to the first unacknowledged batch, and loses nothing", function()
      local s = restart(sim, { fmt = fmt })
      push(sim, s, 1)
      local stale = s.events          -- ack=1
      s:pget("timeout=1")             -- batch 1
      push(sim, s, 1)
      s:pget("timeout=1")             -- ack=2 acknowledges 1, batch 2
      push(sim, s, 1)
      local status, _, body = s:request("GET", stale .. "&timeout=1")
      assert.equal(200, status)
      local batch = C.events_model(body, fmt)
      assert.is_nil(batch.links.next)
      assert.matches("events%?ack=2$", batch.links.resync)
      assert.same({}, C.flat(batch))
      -- following it: batch 2 again (never acknowledged), then the rest
      s.events = batch.links.resync
      assert.same({ 2 }, titles(assert(s:pget("timeout=1"))))
      assert.same({ 3 }, titles(assert(s:pget("timeout=1"))))
    end)
  end)
end)

describe("ucwa-sim application idle expiry with a client gone", function()
  it("counts --app-idle from when the held P-GET's client left, then expires it", function()
    local sim = C.start({ app_idle = 1, pget_timeout = 60 })
    finally(function() C.stop(sim) end)
    local s = C.session(sim, "bot@contoso.com")
    local sock = s:raw_pget("timeout=60")
    socket.sleep(1.5) -- longer than --app-idle: the held P-GET keeps it alive
    assert.equal(1, sim:state().application_count)
    sock:close()
    assert.is_true(eventually(function() return sim:state().pgets_held == 0 end))
    socket.sleep(0.5)
    assert.equal(1, sim:state().application_count)
    assert.is_true(eventually(function() return sim:state().application_count == 0 end, 2))
    local _, st, body = s:get(s.app.href)
    assert.equal(404, st)
    assert.equal("InactiveApplicationExpired", cjson.decode(body).subcode)
  end)
end)
