--- Autodiscovery: from the root URL (or a SIP domain) to the user resource.
-- Follows RootURL.md: internal before external, HTTPS first. (The security
-- check of redirects is the trust policy's: ucwa.trust.)
-- @module ucwa.discovery
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

return discovery
