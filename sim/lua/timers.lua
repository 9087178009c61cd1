-- ucwa-sim: timers.  One binary heap of { at=, seq=, fn=, dead= } on the
-- host's monotonic clock; the C loop calls run_due() (through server.tick)
-- and sleeps until the next deadline.  A timer's fields are the heap's:
-- callers keep the handle only to cancel it.
local host = require "ucwasim.host"

local M = {}

local heap, seq = {}, 0

local function less(a, b)
  return a.at < b.at or (a.at == b.at and a.seq < b.seq)
end

local function push(t)
  heap[#heap + 1] = t
  local i = #heap
  while i > 1 do
    local p = i // 2
    if not less(heap[i], heap[p]) then break end
    heap[i], heap[p] = heap[p], heap[i]
    i = p
  end
end

local function pop()
  local top = heap[1]
  local last = table.remove(heap)
  local n = #heap
  if n > 0 then
    heap[1] = last
    local i = 1
    while true do
      local l, r, m = 2 * i, 2 * i + 1, i
      if l <= n and less(heap[l], heap[m]) then m = l end
      if r <= n and less(heap[r], heap[m]) then m = r end
      if m == i then break end
      heap[i], heap[m] = heap[m], heap[i]
      i = m
    end
  end
  return top
end

M.now = host.now

-- Runs fn() once, `delay` seconds from now (at once if 0 or less).
function M.after(delay, fn)
  seq = seq + 1
  local t = { at = host.now() + math.max(delay or 0, 0), seq = seq, fn = fn }
  push(t)
  return t
end

-- Cancels a timer (nil and spent timers are fine).
function M.cancel(t)
  if t then t.dead = true end
end

-- Runs every due timer; a failing one is reported on stderr and the rest
-- still run.  Returns the seconds until the next one, or nil.
function M.run_due()
  local now = host.now()
  local budget = 100000
  while heap[1] and (heap[1].dead or heap[1].at <= now) and budget > 0 do
    local t = pop()
    if not t.dead then
      t.dead = true
      local ok, err = xpcall(t.fn, debug.traceback)
      if not ok then io.stderr:write("ucwa-sim: ", tostring(err), "\n") end
    end
    budget = budget - 1
  end
  while heap[1] and heap[1].dead do
    pop()
  end
  if heap[1] then
    return math.max(heap[1].at - host.now(), 0)
  end
  return nil
end

return M
