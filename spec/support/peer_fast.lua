-- A small, fast HTTP/1.1 keep-alive peer on cqueues, for the transport bench.
-- Prints "PORT <port> PID <pid>", then serves until killed:
--   /hold...            never answers (idle long polls); the connection is held open
--   /app/events?ack=N   a JSON event batch N whose _links.next is ack=N+1
--   anything else       200 "ok"
-- Loopback only; GET requests without bodies (what the bench sends).
local cqueues = require "cqueues"
local socket = require "cqueues.socket"

local srv = socket.listen("127.0.0.1", 0)
assert(srv:listen())
local _, _, port = srv:localname()
local pid = io.open("/proc/self/stat"):read("n")
io.stdout:write(("PORT %d PID %d\n"):format(port, pid))
io.stdout:flush()

local OK = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"

local function batch(path, ack)
  local body = ('{"_links":{"self":{"href":"%s"},"next":{"href":"%s?ack=%d"}},'
    .. '"sender":[{"rel":"me","href":"/app/me","events":[{"link":{"rel":"me","href":"/app/me"},'
    .. '"type":"updated"}]}]}'):format(path, path:match("^[^?]*"), ack + 1)
  return ("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"):format(#body, body)
end

local function serve(con)
  con:setmode("b", "bn")
  while true do
    local line = con:read("*l")
    if not line then break end
    local path = line:match("^%u+ (%S+)")
    repeat
      local h = con:read("*l")
      if not h then return con:close() end
    until h == "" or h == "\r"
    if not path then break end
    if path:sub(1, 5) == "/hold" then
      con:read("*a")                 -- until the client hangs up
      break
    end
    local ack = path:match("/events%?ack=(%d+)")
    con:write(ack and batch(path, tonumber(ack)) or OK)
    con:flush()
  end
  con:close()
end

local cq = cqueues.new()
cq:wrap(function()
  for con in srv:clients() do
    cq:wrap(function()
      pcall(serve, con)                -- a client hanging up mid-request is expected
      con:close()
    end)
  end
end)
while true do
  local ok, err = cq:loop()
  if ok then break end
  io.stderr:write("peer_fast: ", tostring(err), "\n")
end
