-- ucwa-sim: fault injection, the state dump, and bad input that must never
-- crash the simulator (run under ASan/UBSan/LSan by `make check`).
local C = require "support.sim_client"
local socket = require "socket"
local cjson = require "cjson"

describe("ucwa-sim fault injection", function()
  local sim
  C.use_sim(function(s) sim = s end)

  it("answers the next N matching requests with 503 ServiceFailure", function()
    local s = C.session(sim, "bob@contoso.com")
    local st, r = sim:control("POST", "/_sim/faults/fail", { count = 2, match = "/events", retry_after = 1 })
    assert.equal(200, st)
    assert.equal(2, r.fail.count)
    assert.is_not_nil(s:get(s.app.href)) -- not matching: untouched
    for _ = 1, 2 do
      local b, status, body = s:pget("timeout=0.1")
      assert.is_nil(b)
      assert.equal(503, status)
      assert.equal("ServiceFailure", cjson.decode(body).code)
    end
    assert.is_not_nil((s:pget("timeout=0.1")))
  end)

  it("delays responses", function()
    local s = C.session(sim, "bob@contoso.com")
    sim:control("POST", "/_sim/faults/delay", { count = 1, seconds = 0.4 })
    local t0 = socket.gettime()
    assert.is_not_nil(s:get(s.app.href))
    assert.is_true(socket.gettime() - t0 >= 0.35)
    t0 = socket.gettime()
    assert.is_not_nil(s:get(s.app.href))
    assert.is_true(socket.gettime() - t0 < 0.3)
  end)

  it("dumps its state: applications, P-GETs held, events queued", function()
    sim:control("POST", "/_sim/faults/clear")
    local s = C.session(sim, "bot@contoso.com")
    sim:control("POST", "/_sim/apps/" .. s.app.props.id .. "/events", { count = 7, priority = "low" })
    local p = s:raw_pget("timeout=2&low=1")
    socket.sleep(0.2)
    local status, st = sim:control("GET", "/_sim/state")
    assert.equal(200, status)
    local mine
    for _, a in ipairs(st.applications) do
      if a.id == s.app.props.id then mine = a end
    end
    assert.is_true(mine.pget)
    assert.equal(7, mine.queued)
    assert.is_true(st.pgets_held >= 1)
    assert.is_true(st.suspended_requests >= 1)
    assert.equal(200, (C.raw_receive(p)))
    p:close()
    assert.equal(404, (sim:control("GET", "/_sim/nothing")))
  end)
end)

describe("ucwa-sim bad input", function()
  local sim
  C.use_sim(function(s) sim = s end)

  local function alive()
    local status = C.request("GET", sim.url)
    assert.equal(200, status)
  end

  it("answers unknown and odd paths with 404 and wrong methods with 405", function()
    local s = C.session(sim, "bob@contoso.com")
    for _, p in ipairs({ "/nothing", "/ucwa", "/ucwa/oauth/v1/applications/999999/events?ack=1",
      "/ucwa/oauth/v1/applications/../../etc/passwd", "/%00%ff", "/" .. string.rep("a", 4000),
      s.app.href .. "/communication/conversations/zz/participants/x/admit",
      s.app.href .. "/communication/onlineMeetingInvitations/77", s.app.href .. "/me/nothing" }) do
      local status, h, body = s:request("GET", p)
      assert.is_true(status == 404 or status == 414 or status == 400, p .. " -> " .. tostring(status))
      if status == 404 and h["content-type"] and h["content-type"]:find("json") then
        assert.equal("NotFound", cjson.decode(body).code)
      end
    end
    assert.equal(405, (s:request("PUT", s.app.href)))
    assert.equal(405, (s:request("POST", sim.url, "x")))
    alive()
  end)

  it("survives garbage bodies, headers and raw bytes", function()
    local s = C.session(sim, "bob@contoso.com")
    local join = s.app.embedded.communication.links.joinOnlineMeeting.href
    local bodies = {
      { "null", "application/json" }, { "[1,2,3]", "application/json" },
      { string.rep("[", 100000), "application/json" }, { "{\"subject\": 5}", "application/json" },
      { "\0\1\2\255\254", "application/json" }, { "\239\187\191{\"onlineMeetingUri\": 7}", "application/json" },
      { '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><input>&b;</input>',
        "application/xml" },
      { "<input><property name='subject'>" .. string.rep("x", 300) .. "</property></input>", "application/xml" },
      { "<nope/>", "application/xml" }, { "<input>", "application/xml" }, { "plain", "text/plain" },
      { string.rep("z", 5 * 1024 * 1024), "application/json" },
    }
    for _, b in ipairs(bodies) do
      local status = s:request("POST", join, b[1], b[2])
      assert.is_true(status >= 400 and status < 500, b[2] .. " " .. b[1]:sub(1, 40) .. " -> " .. tostring(status))
    end
    -- bad tokens, odd headers
    for _, auth in ipairs({ "Bearer", "Bearer " .. string.rep("x", 3000), "Basic abc", "bearer cwt=nope", "\1\2" }) do
      local status = C.request("GET", sim.base .. s.app.href, { Authorization = auth, Accept = "\255\254" })
      assert.equal(401, status)
    end
    -- token endpoint with junk
    for _, f in ipairs({ "", "grant_type", "=&=&&", "grant_type=password&username=%zz&password=%",
      string.rep("a=b&", 5000), "ms_rtc_renew=nope" }) do
      local status = C.request("POST", sim.base .. "/WebTicket/oauth/token",
        { ["Content-Type"] = "application/x-www-form-urlencoded" }, f)
      assert.equal(400, status)
    end
    -- raw garbage on the socket
    for _, raw in ipairs({ "\0\0\0\0\r\n\r\n", "GET\r\n\r\n", "GET / HTTP/9.9\r\n\r\n",
      "POST /WebTicket/oauth/token HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort",
      "GET / HTTP/1.1\r\nHost: x\r\n" .. string.rep("X-A: b\r\n", 2000) .. "\r\n" }) do
      local host, port = sim.base:match("^http://([^:]+):(%d+)")
      local sock = socket.tcp()
      sock:settimeout(0.5)
      assert(sock:connect(host, tonumber(port)))
      sock:send(raw)
      sock:receive("*a")
      sock:close()
    end
    -- the control API with junk
    assert.equal(400, (sim:control("POST", "/_sim/apps/" .. s.app.props.id .. "/events", { count = -1 })))
    assert.equal(404, (sim:control("POST", "/_sim/meetings/NOPE/admit", {})))
    alive()
  end)

  it("holds no application state after applications are deleted", function()
    local sessions, ids = {}, {}
    for i = 1, 20 do
      local s = C.session(sim, "bob@contoso.com")
      s:post(s.app.embedded.communication.links.joinOnlineMeeting.href,
        { onlineMeetingUri = "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:DEMO1", operationId = "op" .. i })
      sessions[i] = s
      ids[s.app.props.id] = true
    end
    socket.sleep(0.1)
    for _, s in ipairs(sessions) do
      assert.equal(204, (s:request("DELETE", s.app.href)))
    end
    local _, st = sim:control("GET", "/_sim/state")
    for _, a in ipairs(st.applications) do
      assert.is_nil(ids[a.id])
    end
    for _, m in ipairs(st.meetings) do
      if m.id == "DEMO1" then assert.equal(0, #m.members) end
    end
  end)
end)

describe("ucwa-sim many pending GETs", function()
  it("holds hundreds of P-GETs, releases them, and exits cleanly with some still held", function()
    local sim = C.start({ pget_timeout = 60 })
    local socks = {}
    finally(function()
      for _, s in ipairs(socks) do s:close() end
    end)
    local tok = C.token(sim, "bot@contoso.com")
    local h = { Authorization = "Bearer " .. tok, Accept = "application/json",
      ["Content-Type"] = "application/json" }
    local N = 200
    local events = {}
    for i = 1, N do
      local st, _, body = C.request("POST", sim.base .. "/ucwa/oauth/v1/applications", h,
        cjson.encode({ userAgent = "many", endpointId = "many-" .. i }))
      assert.equal(201, st)
      events[i] = cjson.decode(body)._links.events.href
    end
    for i = 1, N do
      socks[i] = C.raw_send(sim.base, "GET", events[i], { Authorization = "Bearer " .. tok })
    end
    local held = 0
    for _ = 1, 50 do
      local _, st = sim:control("GET", "/_sim/state")
      held = st.pgets_held
      if held >= N then break end
      socket.sleep(0.05)
    end
    assert.equal(N, held)
    -- release half of them with one event each
    for i = 1, N, 2 do
      local id = events[i]:match("/applications/(%d+)/")
      sim:control("POST", "/_sim/apps/" .. id .. "/events", { count = 1 })
    end
    for i = 1, N, 2 do
      local st, _, body = C.raw_receive(socks[i])
      assert.equal(200, st)
      assert.equal(1, #cjson.decode(body).sender[1].events)
    end
    C.stop(sim, "simulator exit with P-GETs held")
  end)
end)
