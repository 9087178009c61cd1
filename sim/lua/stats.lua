-- ucwa-sim: counters for the control API's state dump (requests served,
-- events queued, batches built, held requests whose client went away).
local M = {}

local counts = { requests = 0, events = 0, batches = 0, clients_gone = 0 }

function M.add(name, n)
  counts[name] = counts[name] + (n or 1)
end

function M.snapshot()
  return { requests = counts.requests, events = counts.events, batches = counts.batches,
    clients_gone = counts.clients_gone }
end

return M
