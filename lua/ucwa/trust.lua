--- Where credentials may go (DESIGN.md, "Trust"): the rules every request,
-- every redirect and every token grant of a session is checked against
-- before anything is sent.
--
-- * A token belongs to the origin (scheme, host, port) that challenged for
--   it, and goes there only; never over plain HTTP from an HTTPS session.
-- * A request goes only to a host of the session's domains: the user's own
--   domain (from the sign-in name or the meeting URI), the discovery host's
--   domain, and `trusted_domains`; an address (127.0.0.1) only when the
--   discovery host is that address.
-- * The password goes only to a token service on such a host, over HTTPS
--   when the session is HTTPS.
-- * A redirect passes RootURL.md's security check: no downgrade to HTTP, and
--   a target inside those domains.
-- A URL that breaks a rule fails with `code = "Forbidden"` and a subcode
-- (`InsecureLink`, `UntrustedHost`, `UntrustedTokenService`, `BadLink`).
-- URLs are taken apart by libcurl's URL parser (core.url_parts).
-- @module ucwa.trust
local core = require "ucwa.core"
local errors = require "ucwa.errors"

local trust = {}

local Policy = {}
Policy.__index = Policy

local function is_address(host)
  return host:match("^[%d.]+$") ~= nil or host:find(":", 1, true) ~= nil or host:match("^%[") ~= nil
end

-- The domain a discovery host serves: lyncdiscover[internal].contoso.com -> contoso.com.
local function discovery_domain(host)
  return (host:gsub("^lyncdiscoverinternal%.", ""):gsub("^lyncdiscover%.", ""))
end

-- The domain of a SIP URI or sign-in name (sip:alice@contoso.com;gruu... -> contoso.com).
local function user_domain(s)
  local d = type(s) == "string" and s:match("@([%w.-]+)")
  return d and d:lower()
end

--- A policy for a session: `root` (the discovery URL, or nil with `domain`),
-- `domain`, `user` (sign-in name or meeting URI), `trusted_domains` (a list).
function trust.new(o)
  local self = setmetatable({ domains = {}, https = true }, Policy)
  if o.root then
    local parts = assert(core.url_parts(o.root))
    self.https = parts.scheme == "https"
    if is_address(parts.host) then
      self.address = parts.host
    else
      self.domains[#self.domains + 1] = discovery_domain(parts.host)
    end
  end
  if o.domain then self.domains[#self.domains + 1] = o.domain:lower() end
  local ud = user_domain(o.user)
  if ud then self.domains[#self.domains + 1] = ud end
  for _, d in ipairs(o.trusted_domains or {}) do self.domains[#self.domains + 1] = d:lower() end
  return self
end

--- True when `host` is one of the policy's hosts; else nil and why.
function Policy:host_allowed(host)
  if host == self.address then return true end
  if not is_address(host) then
    for _, d in ipairs(self.domains) do
      if host == d or host:sub(-(#d + 1)) == "." .. d then return true end
    end
  end
  local where = {}
  if self.address then where[#where + 1] = "the discovery host " .. self.address end
  if #self.domains > 0 then where[#where + 1] = "in " .. table.concat(self.domains, ", ") end
  return nil, host .. " is another host, not " .. table.concat(where, " nor ")
    .. " (add its domain to trusted_domains to allow it)"
end

local function forbidden(subcode, message, url)
  return errors.new{ code = "Forbidden", subcode = subcode, message = message, url = url }
end

--- Checks a URL the session is about to request: nil when it may, else an
-- error object saying why (nothing may then be sent).
function Policy:check(url)
  local parts, why = core.url_parts(url)
  if not parts then return forbidden("BadLink", "not a URL: " .. tostring(why)) end
  if parts.scheme ~= "https" and parts.scheme ~= "http" then
    return forbidden("BadLink", "a link to a " .. tostring(parts.scheme) .. " URL")
  end
  if self.https and parts.scheme == "http" then
    return forbidden("InsecureLink", "a link to plain http://" .. parts.host .. " from an HTTPS session", url)
  end
  local ok, reason = self:host_allowed(parts.host)
  if not ok then return forbidden("UntrustedHost", "a link to another host: " .. reason, url) end
end

--- Checks a token service before the password (or an anonymous meeting
-- key) is posted to it: nil when it may, else an error object.
function Policy:check_token_service(url)
  local err = self:check(url)
  if err then
    err.subcode = "UntrustedTokenService"
    err.message = "token service refused: " .. err.message
    return err
  end
end

--- RootURL.md's security check of a redirect from `from` to `to`: nil when
-- it may be followed, else an error object (subcode RedirectRefused).
function Policy:check_redirect(from, to)
  local f, t = core.url_parts(from), core.url_parts(to)
  if not f or not t then return forbidden("RedirectRefused", "redirect to something that is not a URL") end
  if t.scheme ~= "https" and not (t.scheme == "http" and f.scheme == "http") then
    return forbidden("RedirectRefused", "redirect from " .. f.scheme .. " to " .. t.scheme .. " refused", to)
  end
  local ok, why = self:host_allowed(t.host)
  if not ok then return forbidden("RedirectRefused", "redirect refused: " .. why, to) end
end

--- The origin of a URL ("https://host:port"), or nil.
function trust.origin(url)
  return (core.url_origin(url))
end

return trust
