-- The logs that spec processes (spec/support/durable_bot.lua,
-- fleet_worker.lua) write for their specs: one record a line, words
-- separated by spaces, each line ending with " ." so that a line cut by
-- SIGKILL is not read as whole.
--   local say = require("support.line_log").writer(path)   -- in the process
--   say("E", ev.id, title)
--   for _, words in ipairs(require("support.line_log").read(path)) do ... end
local M = {}

--- Opens path for appending (line buffered); returns say(...), which writes
-- its arguments as one record.
function M.writer(path)
  local out = assert(io.open(path, "a"))
  out:setvbuf("line")
  return function(...)
    local t = table.pack(...)
    for i = 1, t.n do t[i] = tostring(t[i]) end
    out:write(table.concat(t, " "), " .\n")
  end
end

--- The complete records of the log at path (none if it does not exist yet),
-- each as a list of words.
function M.read(path)
  local f = io.open(path, "rb")
  if not f then return {} end
  local out = {}
  for l in f:lines() do
    if l:sub(-2) == " ." then
      local w = {}
      for x in l:sub(1, -3):gmatch("%S+") do w[#w + 1] = x end
      out[#out + 1] = w
    end
  end
  f:close()
  return out
end

return M
