-- Shared by the client specs: driving a client against ucwa-sim.
local gettime = require("socket").gettime

local env = {}

env.MEETING = "sip:alice@contoso.com;gruu;opaque=app:conf:focus:id:DEMO1"
env.gettime = gettime

--- Steps the client until pred() is true; raises after `secs` seconds.
function env.drive(client, pred, secs, what)
  local deadline = gettime() + (secs or 5)
  while not pred() do
    if gettime() > deadline then error("timed out waiting for " .. (what or "condition"), 2) end
    client:step(0.02)
  end
end

--- Admits everyone in DEMO1's lobby until inv completes.
function env.admit_until_complete(client, sim, inv, secs)
  env.drive(client, function()
    sim:control("POST", "/_sim/meetings/DEMO1/admit", {})
    return inv:completed()
  end, secs or 5, "completion")
end

return env
