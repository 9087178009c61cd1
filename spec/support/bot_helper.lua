-- Helpers for the specs that drive ucwa clients (bots) against a ucwa-sim:
-- start a simulator, sign clients in, and step every client until a
-- condition holds, with a deadline.
local helpers = require "helpers"

local H = {}

H.DEMO1 = helpers.DEMO1

H.sim = helpers.sim

-- A client for `user` in `format`, started; errors collected in c.errors.
function H.client(sim, user, format, opts)
  local o = { username = user, format = format }
  for k, v in pairs(opts or {}) do o[k] = v end
  local c = helpers.client(sim, o)
  local ready = false
  c:on("ready", function() ready = true end)
  c:start()
  H.wait(function() return ready end, "sign-in of " .. user)
  return c
end

-- Steps every client until cond() is true; fails after `seconds`.
function H.wait(cond, what, seconds)
  return helpers.drive(nil, cond, seconds, what)
end

-- Calls the network method fn(...) with a callback appended and steps every
-- client until it is called; returns its result, err.
function H.call(fn, ...)
  local args = table.pack(...)
  local done, r, e = false, nil, nil
  args[args.n + 1] = function(a, b) done, r, e = true, a, b end
  fn(table.unpack(args, 1, args.n + 1))
  H.wait(function() return done end, "the answer")
  return r, e
end

-- Steps every client for `seconds` (lets late events arrive).
function H.settle(seconds)
  local t0 = helpers.gettime()
  H.wait(function() return helpers.gettime() - t0 >= seconds end, "settling", seconds + 1)
end

H.close_all = helpers.close_clients

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
  -- the link comes with the 201 or an event, which may still be on its way
  H.wait(function() return inv:link("conversation") ~= nil or inv.embedded.conversation ~= nil end,
    "the invitation's conversation link")
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
