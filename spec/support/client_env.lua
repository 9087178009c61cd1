-- Shared by the client specs: driving a client against ucwa-sim.
local helpers = require "helpers"

local env = {}

env.MEETING = helpers.DEMO1
env.gettime = helpers.gettime

--- Admits everyone in DEMO1's lobby until inv completes.
function env.admit_until_complete(client, sim, inv, secs)
  helpers.drive(client, function()
    sim:control("POST", "/_sim/meetings/DEMO1/admit", {})
    return inv:completed()
  end, secs or 5, "completion")
end

--- A token from the simulator's token service (password grant).
function env.password_token(sim, user, password)
  return require("support.sim_client").token(sim, user, password)
end

--- How many token grants the client's log lines show answered 200.
function env.count_token_grants(logs)
  local n = 0
  for _, line in ipairs(logs) do
    if line:match("POST %S+/oauth/token %-> 200") then n = n + 1 end
  end
  return n
end

return env
