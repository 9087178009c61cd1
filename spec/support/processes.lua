-- Background processes of a spec's own (bots, workers, servers), by pid.
--   local P = require "support.processes"
--   local pid = P.start("lua5.4 worker.lua ... >>log.err 2>&1")
--   P.alive(pid)  P.kill(pid)  P.tmp()
local socket = require "socket"

local P = {}

--- A fresh temp path nothing has created yet.
function P.tmp()
  local p = os.tmpname()
  os.remove(p)
  return p
end

--- True while the process runs (a zombie nobody reaped has stopped: init
-- here may reap late).
function P.alive(pid)
  local f = io.open("/proc/" .. pid .. "/stat")
  if not f then return false end
  local st = f:read("a"):match("^%d+ %b() (%a)")
  f:close()
  return st ~= nil and st ~= "Z"
end

--- Ends pid with SIGKILL (SIGCONT first, for one that was stopped) and waits
-- until it has gone.
function P.kill(pid)
  os.execute("kill -CONT " .. pid .. " 2>/dev/null; kill -9 " .. pid .. " 2>/dev/null")
  for _ = 1, 250 do
    if not P.alive(pid) then return end
    socket.sleep(0.02)
  end
  error("process " .. pid .. " survived SIGKILL")
end

--- Runs the shell command cmd in the background; returns its pid.
function P.start(cmd)
  local pidfile = P.tmp()
  assert(os.execute(("%s & echo $! > '%s'"):format(cmd, pidfile)))
  local f = assert(io.open(pidfile, "rb"))
  local pid = tonumber(f:read("a"):match("%d+"))
  f:close()
  os.remove(pidfile)
  return assert(pid)
end

return P
