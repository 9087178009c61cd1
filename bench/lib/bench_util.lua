-- What the benches (bench/*.lua) share: printing a figure, waiting on a
-- stepper, percentiles, a process's memory, signing a client in and
-- releasing the simulator's events. A module of its own folder, so
-- that `make bench` (every bench/*.lua) does not run it as a bench.
--   package.path = "bench/lib/?.lua;" .. package.path
--   local util = require "bench_util"
local gettime = require("socket").gettime
local cjson = require "cjson"
local ucwa = require "ucwa"

local M = {}

--- Prints one line, fmt formatted with the rest, at once.
function M.report(fmt, ...) io.write(fmt:format(...), "\n"); io.flush() end

--- Calls step() until pred() holds; a bench that takes longer than secs
-- seconds has failed.
function M.wait_for(step, pred, secs)
  local deadline = gettime() + secs
  while not pred() do
    if gettime() > deadline then error("bench timed out", 2) end
    step()
  end
end

--- The p-th (0..1) percentile of list (sorted in place).
function M.percentile(list, p)
  table.sort(list)
  return list[math.max(1, math.ceil(#list * p))]
end

--- A number field of /proc/PID/status (kB for the Vm ones); pid nil: this
-- process; 0 for a process that has gone.
function M.proc_status(pid, field)
  local f = io.open("/proc/" .. (pid or "self") .. "/status")
  if not f then return 0 end
  local v = f:read("a"):match(field .. ":%s*(%d+)")
  f:close()
  return tonumber(v) or 0
end

--- The resident set of pid (nil: this process), kB.
function M.rss_kb(pid) return M.proc_status(pid, "VmRSS") end

--- A client made with opts on engine eng (bot@contoso.com of the
-- simulator at opts.url unless opts say otherwise), started and stepped
-- until "ready" fired (at most secs seconds).
function M.signed_in(eng, opts, secs)
  local o = { username = "bot@contoso.com", password = "password", engine = eng }
  for k, v in pairs(opts) do o[k] = v end
  local c = ucwa.client(o)
  local ready = false
  c:on("ready", function() ready = true end)
  c:start()
  M.wait_for(function() eng:step(0.01) end, function() return ready end, secs)
  return c
end

--- Asks the simulator (POST to an application's events URL, through eng) to
-- release `count` synthetic events; on_answer(released_at) when it answered.
function M.release(eng, url, count, on_answer)
  eng:request{ method = "POST", url = url, headers = { ["Content-Type"] = "application/json" },
               body = ('{"count":%d}'):format(count), callback = function(r)
                 if on_answer then on_answer(cjson.decode(r.body).released_at) end
               end }
end

return M
