-- ucwa-sim: the options the C host hands to Lua (--token-lifetime and the
-- rest of the timings, --max-version, --topology, --directory,
-- --auto-admit, --no-control, and host/port/tls of the C side), checked
-- once at start-up.  main.c parses the command line; sim/README.md documents them.
local M = {}

-- Numeric options and their defaults (seconds, except where noted).
local DEFAULTS = {
  ["token-lifetime"] = 28800,
  ["anon-token-lifetime"] = 3600,
  ["app-idle"] = 900,
  ["resume-after"] = 600,
  ["pget-timeout"] = 180,
  ["min-timeout"] = 180,
  ["min-aggregation"] = 5,
  ["step-delay"] = 0.05,
  ["lobby-timeout"] = 900,
  ["invite-timeout"] = 60,
  ["typing-timeout"] = 5,
  ["max-version"] = 2, -- a resource version, 1 or more
}
local MINIMUM = { ["max-version"] = 1 }

local values = {}

-- Takes the host's options (name -> string, or true for a flag).  Returns
-- true, or nil and a one-line message naming the option.
function M.load(opts)
  local v = {}
  for k, d in pairs(DEFAULTS) do v[k] = d end
  for k, x in pairs(opts) do
    if DEFAULTS[k] ~= nil then
      local n = tonumber(x)
      local lo = MINIMUM[k] or 0
      if not n or n ~= n or n < lo or n == math.huge then
        return nil, string.format("bad value for --%s: '%s' (%s)", k, tostring(x),
          MINIMUM[k] and ("a number, " .. lo .. " or more") or "seconds, 0 or more")
      end
      v[k] = n
    else
      v[k] = x
    end
  end
  values = v
  return true
end

-- The value of option `name` (a number for the timings; nil if not given).
function M.get(name)
  return values[name]
end

return M
