--- Autodiscovery: from the root URL (or a SIP domain) to the user resource.
-- Follows RootURL.md: internal before external, HTTPS first, and a `redirect`
-- link is followed only when it passes the security check.
-- @module ucwa.discovery
local util = require "ucwa.util"

local discovery = {}

--- The root URLs to try for a domain, in order.
function discovery.candidates(domain)
  return {
    "https://lyncdiscoverinternal." .. domain,
    "https://lyncdiscover." .. domain,
    "http://lyncdiscoverinternal." .. domain,
    "http://lyncdiscover." .. domain,
  }
end

local function base_domain(host)
  return (host:gsub("^lyncdiscoverinternal%.", ""):gsub("^lyncdiscover%.", ""))
end

--- The security check of a redirect: no downgrade to HTTP, and the target
-- must sit in the discovery domain (the same host for an IP address).
-- Returns true, or nil and why.
function discovery.redirect_allowed(from_url, to_url)
  local fs, fh = util.url_host(from_url)
  local ts, th = util.url_host(to_url)
  if not fs or not ts then return nil, "redirect is not an absolute URL" end
  if ts ~= "https" and not (ts == "http" and fs == "http") then
    return nil, "redirect from " .. fs .. " to " .. ts .. " refused"
  end
  if fh:match("^[%d.]+$") or fh:find(":", 1, true) then
    if th ~= fh then return nil, "redirect to another host (" .. th .. ") refused" end
    return true
  end
  local domain = base_domain(fh)
  if th == domain or th:sub(-(#domain + 1)) == "." .. domain then return true end
  return nil, "redirect to " .. th .. " is outside " .. domain
end

return discovery
