-- ucwa-sim: what credentials each host received, for trust specs (the
-- state dump's `hosts[name].authorization` and `.token_service`): the
-- Authorization headers, whose token each carried, and the bodies its token
-- service got, by grant and user name.  Counts only: no token and no
-- password is kept here.
local M = {}

local counts = {} -- host name -> { authorization=, token_service= }

local function of(host)
  local c = counts[host.name]
  if not c then
    c = {
      requests = 0,
      authorization = { count = 0, own = 0, foreign = 0, unknown = 0, insecure = 0, issuers = {} },
      token_service = { requests = 0, password = 0, anonymous = 0, renew = 0, other = 0, refused = 0,
        insecure = 0, usernames = {}, conferences = {} },
    }
    counts[host.name] = c
  end
  return c
end

local function bump(t, k)
  t[k] = (t[k] or 0) + 1
end

-- A request reached `host` (insecure: over its plain-HTTP listener).
-- issuer: nil without an Authorization header, false for one that carries
-- no token a host issued, else the name of the host that issued it.
function M.request(host, issuer, insecure)
  local c = of(host)
  c.requests = c.requests + 1
  if issuer == nil then return end
  local a = c.authorization
  a.count = a.count + 1
  if insecure then a.insecure = a.insecure + 1 end
  if issuer == false then
    a.unknown = a.unknown + 1
  else
    bump(a.issuers, issuer)
    if issuer == host.name then a.own = a.own + 1 else a.foreign = a.foreign + 1 end
  end
end

-- A body reached `host`'s token service.  kind: "password", "anonymous" or
-- "other"; renew: it carried ms_rtc_renew; who: the user name of a
-- password grant, the conference URI of an anonymous one.
function M.grant(host, kind, renew, who, insecure)
  local t = of(host).token_service
  t.requests = t.requests + 1
  bump(t, kind)
  if renew then t.renew = t.renew + 1 end
  if insecure then t.insecure = t.insecure + 1 end
  if who and kind == "password" then bump(t.usernames, who) end
  if who and kind == "anonymous" then bump(t.conferences, who) end
end

-- The token service of `host` refused a body it counted.
function M.refused(host)
  local t = of(host).token_service
  t.refused = t.refused + 1
end

-- The counts of `host` (live tables: the control API encodes them).
function M.snapshot(host)
  return of(host)
end

return M
