-- ucwa-sim: injected faults (/_sim/faults/...): dropped P-GET answers,
-- failed requests, delayed answers.  Each is armed for a number of requests;
-- the places that honour them ask take_*(), which uses one up.
local M = {}

local drop_pget = 0
local fail, delay -- { count=, match=, ... } or nil

local function matches(f, path)
  return f.match == nil or path:find(f.match, 1, true) ~= nil
end

-- Uses up one armed fault `f` if `path` matches; returns whether it did.
local function take(f, path)
  if not f or f.count <= 0 or not matches(f, path) then return false end
  f.count = f.count - 1
  return true
end

-- The next P-GET answer is to be dropped?
function M.take_drop()
  if drop_pget <= 0 then return false end
  drop_pget = drop_pget - 1
  return true
end

-- The failure the request for `path` is to get: { status=, code=, subcode=,
-- retry_after= }, or nil.
function M.take_failure(path)
  if not take(fail, path) then return nil end
  local f = fail
  if f.count <= 0 then fail = nil end
  return f
end

-- The seconds the answer to `path` is to be held, or nil.
function M.take_delay(path)
  if not take(delay, path) then return nil end
  local secs = delay.seconds
  if delay.count <= 0 then delay = nil end
  return secs
end

function M.drop_pgets(n)
  drop_pget = n
end

-- spec: { count=, status=, code=, subcode=, match=, retry_after= }
function M.fail_next(spec)
  fail = spec.count > 0 and spec or nil
end

-- spec: { count=, seconds=, match= }
function M.delay_next(spec)
  delay = spec.count > 0 and spec or nil
end

function M.clear()
  drop_pget, fail, delay = 0, nil, nil
end

-- What is armed, for the control API.
function M.describe()
  return { drop_pget = drop_pget, fail = fail, delay = delay }
end

return M
