-- Steps for client specs written in callback style: sign a client in, and
-- wait for one network method's callback (helpers.drive steps every client).
local helpers = require "helpers"
local assert = require "luassert"

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

-- One client:batch of meeting m's refresh (its link planted on another
-- host) between two good reads (the meetings, the application); drives
-- until each answered. Asserts the planted one fails alone with Forbidden
-- and the meetings list has the one meeting; returns the three {value, err}.
function S.batch_with_planted_meeting(c, m)
  local res, done = {}, nil
  c:batch(function()
    m:refresh(function(x, e) res[1] = { x, e } end)
    c:meetings(function(l, e) res[2] = { l, e } end)
    c.application:refresh(function(a, e) res[3] = { a, e } end)
  end, function(ok) done = ok end)
  helpers.drive(nil, function() return done and res[1] and res[2] and res[3] end, 10, "the batch")
  assert.is_nil(res[1][1])
  assert.equal("Forbidden", res[1][2].code)
  assert.equal(1, #res[2][1])
  return res
end

return S
