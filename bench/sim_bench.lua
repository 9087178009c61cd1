-- ucwa-sim benchmark (make bench): how many pending GETs the simulator holds,
-- what holding them costs, and how fast it releases events to waiting P-GETs.
--
--   SIM_BENCH_PGETS  concurrent P-GETs (default 2000)
--   SIM_BENCH_ROUNDS event rounds over all of them (default 5)
--
-- Baseline, measured in the same run: the same clients doing plain GETs of the
-- autodiscover root (one request, one response each).  "release / plain" near
-- 1 means releasing an event to a held P-GET costs about one plain round trip.
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;" .. package.path
package.cpath = (os.getenv("UCWA_BUILD") or "build") .. "/?.so;" .. package.cpath -- ucwa.sim uses ucwa.core

local cqueues = require "cqueues"
local csocket = require "cqueues.socket"
local cjson = require "cjson"
local C = require "support.sim_client"

local N = tonumber(os.getenv("SIM_BENCH_PGETS") or 2000)
local ROUNDS = tonumber(os.getenv("SIM_BENCH_ROUNDS") or 5)

local sim = C.start({ pget_timeout = 900, min_timeout = 0.1, step_delay = 0, app_idle = 3600 })
local host, port = sim.base:match("^http://([^:]+):(%d+)")
port = tonumber(port)
local token = C.token(sim, "bot@contoso.com")

local function now()
  return cqueues.monotime()
end

local function cpu_ticks(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return nil end
  local s = f:read("l")
  f:close()
  local rest = s:match("^%d+ %b() (.*)$")
  local fields = {}
  for x in rest:gmatch("%S+") do fields[#fields + 1] = x end
  return tonumber(fields[12]) + tonumber(fields[13]) -- utime + stime (fields 14, 15)
end

-- One HTTP/1.1 exchange on a keep-alive cqueues socket.
local function exchange(sock, method, path, body)
  local req = method .. " " .. path .. " HTTP/1.1\r\nHost: " .. host .. "\r\nAccept: application/json\r\n"
    .. "Authorization: Bearer " .. token .. "\r\n"
  if body then
    req = req .. "Content-Type: application/json\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body
  else
    req = req .. "\r\n"
  end
  assert(sock:write(req))
  assert(sock:flush())
  local line = sock:read("*l")
  if not line then return nil end
  local status = tonumber(line:match("^HTTP/1%.%d (%d+)"))
  local len = 0
  while true do
    local l = sock:read("*l")
    if not l then return nil end
    l = l:gsub("\r$", "")
    if l == "" then break end
    local k, v = l:match("^([^:]+):%s*(.*)$")
    if k and k:lower() == "content-length" then len = tonumber(v) end
  end
  local data = len > 0 and sock:read(len) or ""
  return status, data
end

local function connect()
  local sock = assert(csocket.connect(host, port))
  sock:setmode("t", "bn")
  return sock
end

local cq = cqueues.new()

local function run_all(list, fn, concurrency)
  local i = 0
  for _ = 1, concurrency do
    cq:wrap(function()
      local sock = connect()
      while i < #list do
        i = i + 1
        fn(sock, list[i], i)
      end
      sock:close()
    end)
  end
  assert(cq:loop())
end

-- 1. N applications
local t0 = now()
local apps = {}
for k = 1, N do apps[k] = k end
run_all(apps, function(sock, _, k)
  local st, body = exchange(sock, "POST", "/ucwa/oauth/v1/applications",
    cjson.encode({ userAgent = "bench", endpointId = "bench-" .. k, culture = "en-US" }))
  assert(st == 201, "application: " .. tostring(st))
  apps[k] = cjson.decode(body)._links.events.href
end, 64)
local t_apps = now() - t0

-- 2. baseline: N concurrent plain GETs of the root
t0 = now()
local done = 0
for _ = 1, N do
  cq:wrap(function()
    local sock = connect()
    local st = exchange(sock, "GET", "/autodiscover/autodiscoverservice.svc/root")
    assert(st == 200)
    done = done + 1
    sock:close()
  end)
end
assert(cq:loop())
local t_plain = now() - t0

-- 3. N held P-GETs, each re-issued as soon as it is answered
local answered, total_events = 0, 0
local stopping = false
t0 = now()
for k = 1, N do
  cq:wrap(function()
    local sock = connect()
    local href = apps[k]
    while not stopping do
      local st, body = exchange(sock, "GET", href .. "&timeout=900")
      if not st then break end
      if st == 200 then
        local b = cjson.decode(body)
        href = b._links.next and b._links.next.href or href
        local n = 0
        for _, s in ipairs(b.sender or {}) do n = n + #s.events end
        total_events = total_events + n
        answered = answered + 1
      end
    end
    sock:close()
  end)
end

local function control(method, path, t)
  local st, r
  cq:wrap(function()
    local sock = connect()
    st, r = exchange(sock, method, path, t and cjson.encode(t) or nil)
    sock:close()
  end)
  -- run the loop until the control call returns
  while st == nil do assert(cq:step(0.01)) end
  return st, cjson.decode(r)
end

local function pump_until(cond, limit)
  local deadline = now() + (limit or 60)
  while not cond() do
    assert(cq:step(0.01))
    if now() > deadline then error("bench: timed out") end
  end
end

local held = 0
pump_until(function()
  local _, st = control("GET", "/_sim/state")
  held = st.pgets_held
  return held >= N
end)
local t_hold = now() - t0

-- idle cost of holding them
local cpu0 = cpu_ticks(sim.pid)
local idle_t0 = now()
while now() - idle_t0 < 1 do assert(cq:step(0.05)) end
local cpu1 = cpu_ticks(sim.pid)
local idle_secs = now() - idle_t0
local hz = 100

-- 4. rounds: one event for every application, released to its waiting P-GET
local release_times = {}
for r = 1, ROUNDS do
  local before = answered
  local rt0 = now()
  control("POST", "/_sim/events", { count = 1 })
  pump_until(function() return answered - before >= N end)
  release_times[r] = now() - rt0
  -- wait until every P-GET is held again
  pump_until(function()
    local _, st = control("GET", "/_sim/state")
    return st.pgets_held >= N
  end)
end
local release_total = 0
for _, t in ipairs(release_times) do release_total = release_total + t end

-- 5. one channel, many events: batching
local single_before = total_events
local st_t0 = now()
control("POST", "/_sim/apps/" .. apps[1]:match("/applications/(%d+)/") .. "/events", { count = 20000 })
pump_until(function() return total_events - single_before >= 20000 end)
local t_single = now() - st_t0

stopping = true
local ok, how, code = sim:stop()
-- the held sockets see EOF now
cq:loop(5)

local plain_rate = N / t_plain
local release_rate = N * ROUNDS / release_total
print(string.format("applications created        %6d in %.2f s (%.0f/s)", N, t_apps, N / t_apps))
print(string.format("P-GETs held at once         %6d (all held after %.2f s)", held, t_hold))
print(string.format("simulator CPU while holding %6.1f %% of one core (%.2f s sampled)",
  100 * ((cpu1 - cpu0) / hz) / idle_secs, idle_secs))
print(string.format("baseline: plain GETs        %8.0f requests/s (%d concurrent clients)", plain_rate, N))
print(string.format("events released to P-GETs   %8.0f events/s (%d rounds x %d P-GETs)", release_rate, ROUNDS, N))
print(string.format("release / plain             %8.2f", release_rate / plain_rate))
print(string.format("one channel, batched        %8.0f events/s (20000 events)", 20000 / t_single))
print(string.format("batched / one-per-P-GET     %8.2f", (20000 / t_single) / release_rate))
print(string.format("simulator exit              %s %s %s", tostring(ok), tostring(how), tostring(code)))
if not ok then os.exit(1) end
