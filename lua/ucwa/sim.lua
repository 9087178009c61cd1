--- Start and stop a ucwa-sim (the UCWA 2.0 server simulator) from Lua, for
-- users' own tests and prototypes.
--
--    local sim = require("ucwa.sim").start{ step_delay = 0, min_timeout = 0.1 }
--    print(sim.url)                         -- autodiscover root URL
--    local status, state = sim:control("GET", "/_sim/state")
--    sim:control("POST", "/_sim/meetings/DEMO1/admit", {})
--    sim:stop()
--
-- Options: `binary` (path of ucwa-sim), `port` (default 0: any free port),
-- `args` (a list of extra command-line arguments), and any ucwa-sim option
-- spelt with underscores (`step_delay = 0` gives `--step-delay 0`;
-- `auto_admit = true` gives `--auto-admit`).  The binary is found from
-- `binary`, then $UCWA_SIM, then $UCWA_BUILD/ucwa-sim (default build/), then PATH.
-- @module ucwa.sim
local M = {}

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then
    f:close()
    return true
  end
  return false
end

local function find_binary(opts)
  if opts.binary then return opts.binary end
  local env = os.getenv("UCWA_SIM")
  if env and env ~= "" then return env end
  local built = (os.getenv("UCWA_BUILD") or "build") .. "/ucwa-sim"
  if exists(built) then return built end
  return "ucwa-sim"
end

local function sleep(secs)
  local ok, socket = pcall(require, "socket")
  if ok and socket.sleep then
    socket.sleep(secs)
  else
    os.execute("sleep " .. tostring(secs))
  end
end

-- Still running?  A child that exited stays a zombie until pclose reaps it.
local function running(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "r")
  if f then
    local stat = f:read("l") or ""
    f:close()
    local state = stat:match("^%d+ %b() (%a)")
    return state ~= nil and state ~= "Z" and state ~= "X"
  end
  return os.execute("kill -0 " .. pid .. " 2>/dev/null") == true
end

local Sim = {}
Sim.__index = Sim

--- Starts a simulator; raises if it cannot start.
-- @tparam[opt] table opts
-- @return a simulator object with `url`, `base`, `pid`, `control` and `stop`
function M.start(opts)
  opts = opts or {}
  local argv = { quote(find_binary(opts)), "--port", tostring(opts.port or 0) }
  for k, v in pairs(opts) do
    if k ~= "binary" and k ~= "port" and k ~= "args" and type(k) == "string" then
      local flag = "--" .. k:gsub("_", "-")
      if v == true then
        argv[#argv + 1] = flag
      elseif v ~= false then
        argv[#argv + 1] = flag
        argv[#argv + 1] = quote(v)
      end
    end
  end
  for _, a in ipairs(opts.args or {}) do
    argv[#argv + 1] = quote(a)
  end
  -- The shell prints its pid, then becomes the simulator (same pid).
  local pipe = assert(io.popen("echo $$; exec " .. table.concat(argv, " "), "r"))
  local pid = tonumber(pipe:read("l"))
  local url = pipe:read("l")
  if not pid or not url or not url:match("^https?://") then
    local ok, how, code = pipe:close()
    error("ucwa-sim did not start (" .. tostring(how) .. " " .. tostring(code) .. ", "
      .. tostring(ok) .. "): " .. tostring(url), 2)
  end
  local self = setmetatable({ pid = pid, url = url, pipe = pipe }, Sim)
  self.base = url:match("^(https?://[^/]+)")
  return self
end

--- Sends a control request (JSON body) to the simulator's /_sim API.
-- @treturn number status
-- @treturn table the decoded JSON answer (or the raw body if it is not JSON)
function Sim:control(method, path, body)
  local http = require "socket.http"
  local ltn12 = require "ltn12"
  local cjson = require "cjson.safe"
  local payload = body ~= nil and cjson.encode(body) or ""
  local chunks = {}
  local _, status = http.request({
    url = self.base .. path,
    method = method,
    headers = { ["Content-Type"] = "application/json", ["Content-Length"] = tostring(#payload) },
    source = ltn12.source.string(payload),
    sink = ltn12.sink.table(chunks),
  })
  local text = table.concat(chunks)
  local decoded = cjson.decode(text)
  return status, decoded ~= nil and decoded or text
end

--- Stops the simulator (SIGTERM) and waits for it to exit.
-- @treturn boolean true if it exited with status 0
-- @treturn string "exit" or "signal"
-- @treturn number the exit status or signal number
function Sim:stop()
  if not self.pipe then return true, "exit", 0 end
  os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
  -- Give it 20 s (sanitized builds are slow), then kill it.
  for _ = 1, 400 do
    if not running(self.pid) then break end
    sleep(0.02)
  end
  if running(self.pid) then
    os.execute("kill -KILL " .. self.pid .. " 2>/dev/null")
  end
  local pipe = self.pipe
  self.pipe = nil
  return pipe:close()
end

Sim.__close = Sim.stop
Sim.__gc = function(self)
  if self.pipe then self:stop() end
end

return M
