-- Helpers for the specs that drive ucwa clients (bots) against a ucwa-sim:
-- start a simulator, sign clients in, and step every client until a
-- condition holds, with a deadline.
local ucwa = require "ucwa"
local socket = require "socket"

local H = {}

H.DEMO1 = "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:DEMO1"
H.slow = os.getenv("UCWA_SANITIZED") == "1" and 4 or 1

-- A simulator with short delays, listening on 127.0.0.1.
function H.sim(opts)
  local o = { step_delay = 0.01, min_timeout = 0.1, min_aggregation = 0, pget_timeout = 2 }
  for k, v in pairs(opts or {}) do o[k] = v end
  return require("ucwa.sim").start(o)
end

-- Every client made by H.client, so H.close_all can close them.
local clients = {}

-- A client for `user` in `format`, started; errors collected in c.errors.
function H.client(sim, user, format, opts)
  local o = { url = sim.url, username = user, password = "password", format = format }
  for k, v in pairs(opts or {}) do o[k] = v end
  local c = ucwa.client(o)
  c.errors = {}
  c:on("error", function(err) c.errors[#c.errors + 1] = err end)
  local ready = false
  c:on("ready", function() ready = true end)
  c:start()
  clients[#clients + 1] = c
  H.wait(function() return ready end, "sign-in of " .. user)
  return c
end

-- Steps every open client until cond() is true; fails after `seconds`.
function H.wait(cond, what, seconds)
  local t0 = socket.gettime()
  local limit = (seconds or 5) * H.slow
  while not cond() do
    if socket.gettime() - t0 > limit then
      error("timed out waiting for " .. tostring(what), 2)
    end
    local any = false
    for _, c in ipairs(clients) do
      if c.state ~= "closed" then
        any = true
        c:step(0.01)
      end
    end
    if not any then socket.sleep(0.01) end
  end
end

-- Steps every client for `seconds` (lets late events arrive).
function H.settle(seconds)
  local t0 = socket.gettime()
  H.wait(function() return socket.gettime() - t0 >= seconds end, "settling", seconds + 1)
end

function H.close_all()
  for _, c in ipairs(clients) do
    pcall(c.close, c)
  end
  clients = {}
end

-- Joins `uri` and returns the invitation.
function H.join(c, uri, subject)
  return c:join_meeting{ onlineMeetingUri = uri or H.DEMO1, subject = subject }
end

-- Waits until the invitation completes; returns it.
function H.completed(inv, what)
  H.wait(function() return inv:completed() end, what or "invitation completion")
  return inv
end

-- The invitation's conversation object.
function H.conversation(inv)
  local conv, err
  inv:conversation(function(c, e) conv, err = c, e or false end)
  H.wait(function() return conv ~= nil or err ~= nil end, "conversation")
  assert(conv, tostring(err))
  return conv
end

-- Polls the simulator until member `key` of meeting `id` is in `state` ("lobby", "in", nil: gone).
function H.member_state(sim, id, key)
  local status, m = sim:control("GET", "/_sim/meetings/" .. id)
  assert(status == 200, "GET meeting: " .. tostring(status))
  for _, mem in ipairs(m.members) do
    if mem.key == key then return mem.state end
  end
  return nil
end

-- Records every call of a conversation callback: list of {name, display, collection/extra}.
function H.recorder(conv, names)
  local log = {}
  for _, name in ipairs(names) do
    conv:on(name, function(_, a, b)
      log[#log + 1] = { name = name, who = type(a) == "table" and a.display and a:display() or a, extra = b, obj = a }
    end)
  end
  return log
end

return H
