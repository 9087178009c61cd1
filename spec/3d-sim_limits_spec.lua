-- ucwa-sim under abuse: connections that close early do not stay open
-- (held P-GETs whose client left are closed at once; CLOSE-WAIT was held
-- for ~32 minutes), idle connections time out (--connection-timeout), the
-- connection limit (--max-connections) holds and the simulator serves
-- again once below it, and request bodies are capped per route (20 form
-- bodies of 4 MiB with 600k fields took it to 1.17 GB and blocked it 12.5 s).
local C = require "support.sim_client"
local cjson = require "cjson"
local socket = require "socket"

local function port_of(sim)
  return tonumber(sim.base:match(":(%d+)$"))
end

-- Sockets of the simulator's port in CLOSE-WAIT (its peer closed, it did not).
local function close_wait(port)
  local n = 0
  for line in io.lines("/proc/net/tcp") do
    local lp, st = line:match("^%s*%d+: %x+:(%x+) %x+:%x+ (%x+)")
    if lp and tonumber(lp, 16) == port and st == "08" then n = n + 1 end
  end
  return n
end

local function rss_kb(pid)
  for line in io.lines("/proc/" .. pid .. "/status") do
    local kb = line:match("^VmRSS:%s+(%d+)")
    if kb then return tonumber(kb) end
  end
end

local function connect(port)
  local c = assert(socket.tcp())
  assert(c:connect("127.0.0.1", port))
  return c
end

local eventually = C.eventually

describe("ucwa-sim connections that close early", function()
  it("holds none of them: held P-GETs whose client left are closed at once, the rest as MHD sees them", function()
    local sim = C.start({ pget_timeout = 600 })
    finally(function() C.stop(sim) end)
    local port = port_of(sim)
    local sessions = {}
    for i = 1, 20 do sessions[i] = C.session(sim, "bot@contoso.com") end
    local kinds = {
      function() end,
      function(c) c:send("GET /autodiscover/autodiscoverservice.svc/root HTTP/1.1\r\nHost: x\r\n") end,
      function(c) c:send("POST /WebTicket/oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: "
        .. "application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=pa") end,
      function(c) c:send("GET /autodiscover/autodiscoverservice.svc/root HTTP/1.1\r\nHost: x\r\n\r\n") end,
    }
    local socks = {}
    for _, s in ipairs(sessions) do socks[#socks + 1] = s:raw_pget("timeout=600") end
    for i = 1, 100 do
      local c = connect(port)
      kinds[i % #kinds + 1](c)
      socks[#socks + 1] = c
    end
    assert.is_true(eventually(function() return sim:state().pgets_held == 20 end))
    for _, c in ipairs(socks) do c:close() end
    assert.is_true(eventually(function()
      local st = sim:state()
      return st.pgets_held == 0 and st.suspended_requests == 0 and st.connections <= 1 and close_wait(port) == 0
    end), "connections left open: " .. cjson.encode(sim:state().connections) .. ", CLOSE-WAIT " .. close_wait(port))
    assert.equal(20, sim:state().stats.clients_gone)
    -- nothing lost: events for those applications wait for their next P-GET
    local s = sessions[1]
    sim:control("POST", "/_sim/apps/" .. s.app.props.id .. "/events", { count = 3 })
    local batch = assert(s:pget("timeout=1"))
    assert.equal(3, #C.flat(batch))
  end)
end)

describe("ucwa-sim --connection-timeout", function()
  it("closes a connection idle for that long, but not a P-GET held longer", function()
    local sim = C.start({ connection_timeout = 1 })
    finally(function() C.stop(sim) end)
    local idle = connect(port_of(sim))
    idle:settimeout(3)
    local s = C.session(sim, "bot@contoso.com")
    local t0 = socket.gettime()
    local _, err = idle:receive(1)
    assert.equal("closed", err)
    assert.is_true(socket.gettime() - t0 < 2.5)
    idle:close()
    local held = socket.gettime()
    local batch, status = s:pget("timeout=2")
    assert.equal(200, status)
    assert.is_true(socket.gettime() - held >= 1.9)
    assert.is_table(batch.links.next and batch)
  end)
end)

describe("ucwa-sim --max-connections", function()
  it("keeps at most that many open, and serves again once below it", function()
    local sim = C.start({ max_connections = 10, connection_timeout = 1 })
    finally(function() C.stop(sim) end)
    local port = port_of(sim)
    local socks = {}
    for i = 1, 30 do socks[i] = connect(port) end
    local function closed()
      local n = 0
      for _, c in ipairs(socks) do
        c:settimeout(0)
        local _, err = c:receive(1)
        if err == "closed" then n = n + 1 end
      end
      return n
    end
    socket.sleep(0.5)
    assert.equal(0, closed()) -- 10 open, 20 waiting to be accepted
    -- regression: once at the limit it never accepted again
    assert.is_true(eventually(function() return closed() == 30 end, 6))
    for _, c in ipairs(socks) do c:close() end
    local t0 = socket.gettime()
    assert.equal(200, (sim:control("GET", "/_sim/state")))
    assert.is_true(socket.gettime() - t0 < 1)
  end)
end)

describe("ucwa-sim request body caps", function()
  local sim
  C.use_sim_each(function(s) sim = s end)

  -- Sends `body` on a socket of its own; returns the socket (read it with C.raw_receive).
  local function send(path, ctype, body)
    local c = connect(port_of(sim))
    c:settimeout(30)
    assert(c:send(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n")
      :format(path, ctype, #body)))
    assert(c:send(body))
    return c
  end

  it("refuses 20 form bodies of 4 MiB with 600k fields quickly, in little memory", function()
    local fields = ("a=b&"):rep(600000)
    local body = fields .. "z=" .. ("x"):rep(4 * 1024 * 1024 - #fields - 2)
    local before = rss_kb(sim.pid)
    local t0 = socket.gettime()
    local socks = {}
    for i = 1, 20 do
      socks[i] = send(i % 2 == 0 and "/WebTicket/oauth/token" or "/ucwa/oauth/v1/applications",
        "application/x-www-form-urlencoded", body)
    end
    for _, c in ipairs(socks) do
      local status = C.raw_receive(c)
      c:close()
      assert.equal(413, status)
    end
    assert.is_true(socket.gettime() - t0 < 5, "took " .. (socket.gettime() - t0) .. " s")
    assert.is_true(rss_kb(sim.pid) - before < 50 * 1024, "RSS grew by " .. (rss_kb(sim.pid) - before) .. " kB")
    t0 = socket.gettime()
    assert.equal(200, (sim:control("GET", "/_sim/state")))
    assert.is_true(socket.gettime() - t0 < 1)
  end)

  it("refuses a token-service form with too many fields, and control bodies over 256 KiB", function()
    local c = send("/WebTicket/oauth/token", "application/x-www-form-urlencoded", ("a=b&"):rep(16000))
    local status, _, body = C.raw_receive(c)
    c:close()
    assert.equal(400, status)
    assert.same({ error = "invalid_request", error_description = "too many form fields" }, cjson.decode(body))
    c = send("/WebTicket/oauth/token", "application/x-www-form-urlencoded", ("a"):rep(65 * 1024))
    assert.equal(413, (C.raw_receive(c)))
    c:close()
    c = send("/_sim/users", "application/json", cjson.encode({ username = ("u"):rep(300 * 1024) }))
    status, _, body = C.raw_receive(c)
    c:close()
    assert.equal(413, status)
    assert.matches("too large", cjson.decode(body).error)
    -- a UCWA body of 4 MiB is read; one byte more is not
    local s = C.session(sim, "bot@contoso.com")
    local join = s.app.embedded.communication.links.joinOnlineMeeting.href
    assert.equal(400, (s:request("POST", join, ("z"):rep(4 * 1024 * 1024), "application/json")))
    local st2, _, b2 = s:request("POST", join, ("z"):rep(4 * 1024 * 1024 + 1), "application/json")
    assert.equal(413, st2)
    assert.equal("EntityTooLarge", cjson.decode(b2).code)
  end)
end)
