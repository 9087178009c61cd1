-- A redis-server of a spec's own: on 127.0.0.1 at a free port, in a temp
-- directory, nothing saved to disk; stop() ends it (SIGTERM, then SIGKILL).
--   local R = require "support.redis_server"
--   local srv = R.start()        -- srv.host, srv.port, srv.pid
--   srv:cli("SET", "k", "v")     -- a command over a plain socket (luasocket)
--   srv:pause() srv:resume()     -- SIGSTOP / SIGCONT: a Redis that hangs
--   srv:stop()
local socket = require "socket"

local R = {}
local Server = {}
Server.__index = Server

-- A port nothing listens on now (redis-server cannot pick one itself:
-- --port 0 turns TCP off).
local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local alive = require("support.processes").alive

-- One command in RESP, its reply read back: a string, an integer, a table,
-- false for a nil reply, or nil and the error text.
local function read_reply(c)
  local line, err = c:receive("*l")
  if not line then return nil, err end
  local t, rest = line:sub(1, 1), line:sub(2)
  if t == "+" then return rest end
  if t == "-" then return nil, rest end
  if t == ":" then return math.tointeger(tonumber(rest)) end
  if t == "$" then
    local n = tonumber(rest)
    if n < 0 then return false end
    local s = c:receive(n + 2)
    return s and s:sub(1, n)
  end
  if t == "*" then
    local n, out = tonumber(rest), {}
    for i = 1, n do out[i] = read_reply(c) end
    return out
  end
  return nil, "bad reply " .. line
end

function Server:cli(...)
  local c = assert(socket.connect(self.host, self.port))
  c:settimeout(10)
  local args = table.pack(...)
  local parts = { "*" .. args.n .. "\r\n" }
  for i = 1, args.n do
    local a = tostring(args[i])
    parts[#parts + 1] = "$" .. #a .. "\r\n" .. a .. "\r\n"
  end
  c:send(table.concat(parts))
  local r, err = read_reply(c)
  c:close()
  return r, err
end

function Server:pause() os.execute("kill -STOP " .. self.pid) end
function Server:resume() os.execute("kill -CONT " .. self.pid) end

function Server:stop()
  if not self.pid then return end
  -- nothing is kept on disk: SIGKILL loses nothing, and is quick
  os.execute("kill -KILL " .. self.pid .. " 2>/dev/null")
  local deadline = socket.gettime() + 10
  while alive(self.pid) and socket.gettime() < deadline do socket.sleep(0.02) end
  if alive(self.pid) then os.execute("kill -KILL " .. self.pid .. " 2>/dev/null") end
  os.execute("rm -rf '" .. self.dir .. "'")
  self.pid = nil
end

-- Starts one; opts.port: that port (default: a free one), opts.args: more
-- redis-server options ({"--appendfsync", "always"}).
function R.start(opts)
  opts = opts or {}
  for _ = 1, 5 do
    local port = opts.port or free_port()
    local dir = assert(io.popen("mktemp -d /tmp/ucwa-redis.XXXXXX")):read("l")
    local argv = { "redis-server", "--port", tostring(port), "--bind", "127.0.0.1", "--save", "''",
      "--appendonly", "no", "--dir", dir, "--logfile", dir .. "/redis.log", "--enable-debug-command", "yes" }
    for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end
    local cmd = table.concat(argv, " ") .. " </dev/null >/dev/null 2>&1 & echo $!"
    local p = assert(io.popen("echo $$; exec " .. cmd, "r"))
    p:read("l")
    local pid = p:read("l")
    p:close()
    local self = setmetatable({ host = "127.0.0.1", port = port, pid = pid, dir = dir }, Server)
    local deadline = socket.gettime() + 10
    while socket.gettime() < deadline and alive(pid) do
      local c = socket.connect("127.0.0.1", port)
      if c then
        c:close()
        if self:cli("PING") == "PONG" then return self end
      end
      socket.sleep(0.02)
    end
    self:stop() -- the port was taken meanwhile: another one
  end
  error("redis-server did not start")
end

return R
