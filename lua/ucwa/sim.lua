--- Start and stop a ucwa-sim (the UCWA 2.0 server simulator) from Lua, for
-- users' own tests and prototypes.
--
--    local sim = require("ucwa.sim").start{ step_delay = 0, min_timeout = 0.1 }
--    print(sim.url)                         -- autodiscover root URL
--    local status, state = sim:control("GET", "/_sim/state")
--    sim:control("POST", "/_sim/meetings/DEMO1/admit", {})
--    sim:stop()
--
-- With `topology` (a preset name, a file, or a table: see sim/README.md) it
-- serves several hosts, each on its own loopback address, and writes links
-- with their names: `sim.hosts[name]` has each host's `url` (by name),
-- `address`, `port` (and `http_url`, `http_port` for its plain-HTTP
-- listener, with TLS), and `sim.resolve` the entries ("name:port:address")
-- a libcurl client needs to reach them by name.
--
-- Options: `binary` (path of ucwa-sim), `port` (default 0: any free port),
-- `args` (a list of extra command-line arguments), and any ucwa-sim option
-- spelt with underscores (`step_delay = 0` gives `--step-delay 0`;
-- `auto_admit = true` gives `--auto-admit`); a name the binary does not
-- know raises, with the closest one. The binary is found from `binary`, then
-- $UCWA_SIM, then $UCWA_BUILD/ucwa-sim (default build/), then the `bin`
-- folder of the tree the module is installed in (a rock), then PATH.
-- The control requests go through the module's own transport (ucwa.core).
-- @module ucwa.sim
local core = require "ucwa.core"
local cjson = require "cjson.safe"
local options = require "ucwa.options"

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

local function on_path(name)
  for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    if exists(dir .. "/" .. name) then return dir .. "/" .. name end
  end
end

-- The rock installs ucwa-sim in <tree>/bin beside <tree>/lib/lua/5.4/ucwa/core.so.
local function installed()
  local so = package.searchpath("ucwa.core", package.cpath)
  local tree = so and so:match("^(.*)/lib/lua/5%.4/ucwa/core%.so$")
  if tree and exists(tree .. "/bin/ucwa-sim") then return tree .. "/bin/ucwa-sim" end
end

local function find_binary(opts)
  if opts.binary then return opts.binary end
  local env = os.getenv("UCWA_SIM")
  if env and env ~= "" then return env end
  local built = (os.getenv("UCWA_BUILD") or "build") .. "/ucwa-sim"
  local found = (exists(built) and built) or installed() or on_path("ucwa-sim")
  if found then return found end
  error("ucwa-sim not found: build it (make, in the checkout: build/ucwa-sim), install the rock, "
    .. "or give its path as binary= or in $UCWA_SIM", 3)
end

-- The options a ucwa-sim binary takes, read from its --help (cached per binary).
local known_options = {}
local function options_of(binary)
  if known_options[binary] then return known_options[binary] end
  local p = io.popen(quote(binary) .. " --help 2>&1", "r")
  local text = p and p:read("a") or ""
  if p then p:close() end
  local set = {}
  for flag in text:gmatch("%-%-([%w-]+)") do set[(flag:gsub("-", "_"))] = true end
  if not set.port then
    error("ucwa-sim at " .. binary .. " does not run (its --help said: " .. text:sub(1, 200) .. ")", 3)
  end
  set.help, set.version = nil, nil
  known_options[binary] = set
  return set
end

-- A private engine per simulator: its control requests and its waits.
local function engine_of(self)
  if not self.engine then
    -- A simulator this process started on loopback, often with a self-signed
    -- certificate: its control calls need no proxy and no verification.
    self.engine = core.engine{ proxy = false, verify = not self.control_base:match("^https:") }
  end
  return self.engine
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

-- The lines after the root URL: "host NAME SCHEME://ADDRESS:PORT
-- [http://ADDRESS:PORT]", then an empty one.
local function read_hosts(self)
  local discovery = self.base:match("^https?://([^:/]+)")
  for line in self.pipe:lines() do
    if line == "" then break end
    local name, scheme, address, port, rest = line:match("^host (%S+) (https?)://([^:]+):(%d+)%s*(.*)$")
    if name then
      local h = { name = name, address = address, port = tonumber(port), scheme = scheme,
        url = scheme .. "://" .. name .. ":" .. port }
      local hport = rest:match("^http://[^:]+:(%d+)$")
      if hport then h.http_port, h.http_url = tonumber(hport), "http://" .. name .. ":" .. hport end
      if name ~= address then -- names, not addresses, need resolving
        for _, p in ipairs({ port, hport }) do self.resolve[#self.resolve + 1] = name .. ":" .. p .. ":" .. address end
      end
      self.hosts[name] = h
      if name == discovery then self.control_base = scheme .. "://" .. address .. ":" .. port end
    end
  end
end

--- Starts a simulator; raises if it cannot start.
-- @tparam[opt] table opts
-- @return a simulator object with `url`, `base` (by name), `control_base`
-- (by address), `hosts`, `resolve`, `pid`, `control`, `state` and `stop`
function M.start(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("bad argument #1 to 'start' (table expected)", 2) end
  local binary = find_binary(opts)
  local spec = {}
  for k in pairs(options_of(binary)) do
    spec[k] = function(v) if type(v) ~= "string" and type(v) ~= "number" and type(v) ~= "boolean" then
      return "a string, a number or a boolean" end end
  end
  spec.binary = function(v) if type(v) ~= "string" then return "a string" end end
  if spec.topology then
    spec.topology = function(v) if type(v) ~= "string" and type(v) ~= "table" then return "a string or a table" end end
  end
  spec.args = function(v) if type(v) ~= "table" then return "a table" end end
  options.check(opts, spec, "start", 2)
  local argv = { quote(binary), "--port", tostring(opts.port or 0) }
  for k, v in pairs(opts) do
    if k ~= "binary" and k ~= "port" and k ~= "args" and type(k) == "string" then
      local flag = "--" .. k:gsub("_", "-")
      if type(v) == "table" then v = assert(cjson.encode(v)) end -- topology: inline JSON
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
  local self = setmetatable({ pid = pid, url = url, pipe = pipe, hosts = {}, resolve = {} }, Sim)
  self.base = url:match("^(https?://[^/]+)")
  self.control_base = self.base
  if options_of(binary).topology then read_hosts(self) end
  return self
end

--- The state dump (`GET /_sim/state`), decoded; raises if it cannot be had.
-- @treturn table
function Sim:state()
  local status, st = self:control("GET", "/_sim/state")
  if status ~= 200 then error("ucwa-sim state: " .. tostring(status) .. " " .. tostring(st), 2) end
  return st
end

--- Sends a control request (JSON body) to the simulator's /_sim API (on
-- the discovery host, by its address).
-- @treturn number status
-- @treturn table the decoded JSON answer (or the raw body if it is not JSON)
function Sim:control(method, path, body)
  local eng = engine_of(self)
  local payload = body ~= nil and cjson.encode(body) or (method ~= "GET" and "" or nil)
  local resp, err
  eng:request{
    method = method, url = self.control_base .. path, body = payload, timeout = 30,
    headers = { ["Content-Type"] = payload and "application/json" or nil },
    callback = function(r, e) resp, err = r or false, e end,
  }
  while resp == nil do eng:step(1) end
  if not resp then return nil, err end
  local decoded = cjson.decode(resp.body)
  return resp.status, decoded ~= nil and decoded or resp.body
end

--- Stops the simulator (SIGTERM) and waits for it to exit.
-- @treturn boolean true if it exited with status 0
-- @treturn string "exit" or "signal"
-- @treturn number the exit status or signal number
function Sim:stop()
  if not self.pipe then return true, "exit", 0 end
  os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
  -- Give it 20 s (sanitized builds are slow), then kill it.
  local eng = engine_of(self)
  for _ = 1, 400 do
    if not running(self.pid) then break end
    eng:step(0.02) -- nothing else runs on this engine: a sleep
  end
  if running(self.pid) then
    os.execute("kill -KILL " .. self.pid .. " 2>/dev/null")
  end
  local pipe = self.pipe
  self.pipe = nil
  eng:close()
  self.engine = nil
  return pipe:close()
end

Sim.__close = Sim.stop
Sim.__gc = function(self)
  if self.pipe then self:stop() end
end

return M
