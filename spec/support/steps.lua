-- Steps for client specs written in callback style: sign a client in, and
-- wait for one network method's callback (helpers.drive steps every client).
local helpers = require "helpers"

local S = {}

-- Starts `c` and drives until it is ready; returns it.
function S.ready(c)
  c:start()
  helpers.drive(nil, function() return c.state == "ready" end, 10, "sign-in")
  return c
end

-- Calls f(cb) and drives until cb was called; returns cb's arguments.
function S.wait(f, what)
  local r
  f(function(...) r = table.pack(...) end)
  helpers.drive(nil, function() return r ~= nil end, 10, what)
  return table.unpack(r, 1, r.n)
end

return S
