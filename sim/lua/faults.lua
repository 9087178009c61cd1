-- ucwa-sim: injected faults (/_sim/faults/...): dropped P-GET answers,
-- delayed answers, and failures, one kind per real-server behaviour.  Each
-- is armed for a number of requests; the places that honour them ask
-- take_*(), which uses one up.
--
-- Failure kinds (server.lua writes their answers):
--   fail            any status, code, subcode, message, parameters, debugInfo, headers
--   token-invalid   403 + X-Ms-diagnostics 28055 + Warning "InvalidToken"  (requests with a token)
--   ticket-invalid  500 IIS page + X-Ms-diagnostics 28032                  (requests with a token)
--   iis-401         IIS's 401 page, no WWW-Authenticate                    (requests with a token)
--   pool-down       502 on the applications resource                       (its host)
--   api-version     404 NotFound / APIVersionNotSupported
local console = require "console"

local M = {}

local drop_pget = 0
local delay -- { count=, match=, seconds= } or nil
local failures = {} -- kind -> { kind=, count=, match=, host=, ... }
local order = {}    -- kinds, in arming order

-- Kinds that apply only to requests that carry an Authorization header, and
-- the paths a kind applies to when the fault gives no `match`.
local NEEDS_TOKEN = { ["token-invalid"] = true, ["ticket-invalid"] = true, ["iis-401"] = true }
local APPLICATIONS = "/v1/applications"
M.KINDS = { fail = true, ["token-invalid"] = true, ["ticket-invalid"] = true, ["iis-401"] = true,
  ["pool-down"] = true, ["api-version"] = true }

local function applies(f, path, host, has_token)
  if f.count <= 0 or (f.host and f.host ~= host.name) or (NEEDS_TOKEN[f.kind] and not has_token) then
    return false
  end
  if f.match then return path:find(f.match, 1, true) ~= nil end
  if f.kind == "pool-down" then
    local p = path:lower()
    return p:sub(-#APPLICATIONS) == APPLICATIONS and p:sub(1, 6) == "/ucwa/"
  end
  return true
end

-- The next P-GET answer is to be dropped?
function M.take_drop()
  if drop_pget <= 0 then return false end
  drop_pget = drop_pget - 1
  console.changed("faults")
  return true
end

-- The failure a request for `path` on `host` (has_token: it carries an
-- Authorization header) is to get: the armed record (kind= and the
-- fields it was armed with), or nil.
function M.take_failure(path, host, has_token)
  if #order == 0 then return nil end
  for i, kind in ipairs(order) do
    local f = failures[kind]
    if applies(f, path, host, has_token) then
      f.count = f.count - 1
      console.changed("faults")
      if f.count <= 0 then
        failures[kind] = nil
        table.remove(order, i)
      end
      return f
    end
  end
  return nil
end

-- The seconds the answer to `path` is to be held, or nil.
function M.take_delay(path)
  if not delay or delay.count <= 0 or (delay.match and not path:find(delay.match, 1, true)) then return nil end
  delay.count = delay.count - 1
  console.changed("faults")
  local secs = delay.seconds
  if delay.count <= 0 then delay = nil end
  return secs
end

function M.drop_pgets(n)
  drop_pget = n
  console.changed("faults")
end

-- Arms a failure of `spec.kind` (replacing one of the same kind) for
-- spec.count requests: { kind=, count=, match=, host=, ... }.
function M.fail_next(spec)
  if failures[spec.kind] then
    for i, k in ipairs(order) do
      if k == spec.kind then table.remove(order, i) break end
    end
  end
  failures[spec.kind] = nil
  if spec.count > 0 then
    failures[spec.kind] = spec
    order[#order + 1] = spec.kind
  end
  console.changed("faults")
end

-- spec: { count=, seconds=, match= }
function M.delay_next(spec)
  delay = spec.count > 0 and spec or nil
  console.changed("faults")
end

function M.clear()
  drop_pget, delay, failures, order = 0, nil, {}, {}
  console.changed("faults")
end

-- What is armed, for the control API: drop_pget, fail (the generic one),
-- delay, and failures (every kind, in arming order).
function M.describe()
  local list = {}
  for i, kind in ipairs(order) do list[i] = failures[kind] end
  return { drop_pget = drop_pget, fail = failures.fail, delay = delay, failures = list }
end

return M
