-- Shared helpers for the specs: paths to the build and to the fixtures.
local helpers = {}

helpers.build = os.getenv("UCWA_BUILD") or "build"
-- The project's own copy of the UCWA reference samples (see its README.md).
helpers.fixtures = "spec/fixtures/ucwa-docs"
helpers.pages = helpers.fixtures .. "/pages"
helpers.sanitized = os.getenv("UCWA_SANITIZED") == "1"
-- The interpreter for child Lua processes: under `make check`, the sanitized one.
helpers.lua = os.getenv("UCWA_LUA") or "lua5.4"

function helpers.read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- The specs' one vocabulary for servers and loops -------------------------

local gettime = require("socket").gettime
helpers.gettime = gettime
-- Sanitized builds run several times slower: deadlines stretch by this.
helpers.SLOW = helpers.sanitized and 4 or 1
helpers.DEMO1 = "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:DEMO1"

-- A ucwa-sim with test-friendly timings (short P-GET holds and scenario
-- steps); `opts` adds or overrides ucwa-sim options.
helpers.SIM_DEFAULTS = { step_delay = 0.01, min_timeout = 0.1, min_aggregation = 0, pget_timeout = 2 }
function helpers.sim(opts)
  local o = {}
  for k, v in pairs(helpers.SIM_DEFAULTS) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  return require("ucwa.sim").start(o)
end

-- Clients made by helpers.client, which helpers.drive steps by default.
helpers.clients = {}

-- A client of `sim` (bot@contoso.com unless opts say otherwise), not started;
-- its errors are collected in c.errors.
function helpers.client(sim, opts)
  local o = { url = sim.url, username = "bot@contoso.com", password = "password" }
  for k, v in pairs(opts or {}) do o[k] = v end
  if o.anonymous or o.token then o.username, o.password = nil, nil end
  local c = require("ucwa").client(o)
  c.errors = {}
  c:on("error", function(err) c.errors[#c.errors + 1] = err end)
  helpers.clients[#helpers.clients + 1] = c
  return c
end

-- Closes every client helpers.client made.
function helpers.close_clients()
  for _, c in ipairs(helpers.clients) do pcall(c.close, c) end
  helpers.clients = {}
end

local function step(stepper)
  if stepper == nil then
    local any = false
    for _, c in ipairs(helpers.clients) do
      if c.state ~= "closed" then any = true; c:step(0.01) end
    end
    if not any then require("socket").sleep(0.01) end
  elseif type(stepper) == "table" and stepper.step == nil then
    for _, s in ipairs(stepper) do s:step(0.01) end
  else
    stepper:step(0.02)
  end
end

-- Steps `stepper` (a client, an engine, a list of them, or nil: every client
-- of helpers.client) until pred() is true; raises after `seconds` (default
-- 5, stretched under the sanitizers), naming `what`.
function helpers.drive(stepper, pred, seconds, what)
  local deadline = gettime() + (seconds or 5) * helpers.SLOW
  while not pred() do
    if gettime() > deadline then error("timed out waiting for " .. tostring(what or "a condition"), 2) end
    step(stepper)
    -- flushes lifetime bugs out under the sanitizers (luv's habit)
    if helpers.sanitized then collectgarbage() end
  end
end

-- A fresh simulator (helpers.sim(opts)) for each test of the enclosing
-- describe block, given to set(sim); after each test the clients
-- helpers.client made are closed and the simulator stopped.
function helpers.sim_each(set, opts)
  local busted = require "busted"
  local sim
  busted.before_each(function()
    sim = helpers.sim(opts)
    set(sim)
  end)
  busted.after_each(function()
    helpers.close_clients()
    sim:stop()
  end)
end

-- Starts client c and drives it until "ready" (true), or until an error
-- that will not be retried (false), for at most `seconds` (default 10).
function helpers.start_ready(c, seconds)
  local done = false
  c:on("ready", function() done = true end)
  c:start()
  helpers.drive(c, function() return done or #c.errors > 0 and c.errors[#c.errors].retrying == false end,
    seconds or 10, "ready")
  return done
end

-- A self-signed certificate for 127.0.0.1 and the host `names` given, in a
-- fresh folder; returns the folder, the certificate and the key paths.
function helpers.make_cert(names)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  local san = { "IP:127.0.0.1" }
  for _, n in ipairs(names or {}) do san[#san + 1] = "DNS:" .. n end
  assert(os.execute(("env -u LD_PRELOAD openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=%s "
    .. "-addext subjectAltName=%s -keyout %s/key.pem -out %s/cert.pem >/dev/null 2>&1")
    :format(names and names[1] or "127.0.0.1", table.concat(san, ","), dir, dir)))
  return dir, dir .. "/cert.pem", dir .. "/key.pem"
end

-- Runs Lua `code` in a child interpreter (helpers.lua, the sanitized one under
-- `make check`, which takes a script file, not -e) with the checkout's module
-- on its paths. `env` is put before the command (e.g. "env -u UCWA_SIM"),
-- `redirect` after it (default "2>&1"). Returns what it printed.
function helpers.run_lua(code, env, redirect)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(('package.path = "lua/?.lua;lua/?/init.lua;" .. package.path\n'
    .. 'package.cpath = %q .. "/?.so;" .. package.cpath\n'):format(helpers.build), code)
  f:close()
  local p = assert(io.popen(("%s %s %s %s"):format(env or "", helpers.lua, path, redirect or "2>&1")))
  local out = p:read("a")
  p:close()
  os.remove(path)
  return out
end

return helpers
