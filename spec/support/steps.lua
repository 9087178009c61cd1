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

-- One client:batch of `reads`, each a function(cb) making one request (cb
-- its callback); drives until the batch and every read answered. Returns
-- { {value, err} per read }, and what the batch's callback got (ok, err).
function S.batch(c, reads)
  local res, done = {}, nil
  c:batch(function()
    for i, read in ipairs(reads) do read(function(x, e) res[i] = { x, e } end) end
  end, function(ok, err) done = { ok, err } end)
  helpers.drive(nil, function()
    if not done then return false end
    for i = 1, #reads do if not res[i] then return false end end
    return true
  end, 10, "the batch")
  return res, done[1], done[2]
end

-- One client:batch of meeting m's refresh (its link planted on another
-- host) between two good reads (the meetings, the application); drives
-- until each answered. Asserts the planted one fails alone with Forbidden
-- and the meetings list has the one meeting; returns the three {value, err}.
function S.batch_with_planted_meeting(c, m)
  local res = S.batch(c, {
    function(cb) m:refresh(cb) end,
    function(cb) c:meetings(cb) end,
    function(cb) c.application:refresh(cb) end,
  })
  assert.is_nil(res[1][1])
  assert.equal("Forbidden", res[1][2].code)
  assert.equal(1, #res[2][1])
  return res
end

return S
