-- ucwa-sim: answers that come from the web server in front of UCWA, not
-- from UCWA: IIS's HTML pages (401 without a challenge, 403, 500, 502), the
-- X-Ms-diagnostics and Warning headers real pools add to refused tokens,
-- and the plain-HTTP listener's 302 to HTTPS.
local M = {}

local function page(status, title, text, extra)
  local h = { ["Content-Type"] = "text/html", ["Cache-Control"] = "private",
    Server = "Microsoft-IIS/8.5", ["X-Powered-By"] = "ASP.NET" }
  for k, v in pairs(extra or {}) do h[k] = v end
  return status, h, '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
    .. '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\r\n'
    .. '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>' .. title .. "</title></head>"
    .. '<body><div id="header"><h1>Server Error</h1></div><div id="content"><fieldset><h2>'
    .. title .. "</h2><h3>" .. text .. "</h3></fieldset></div></body></html>"
end

-- X-Ms-diagnostics as pools write it: code;reason="...";source="host".
function M.diagnostics(code, reason, host)
  return string.format('%d;reason="%s";source="%s"', code, reason, host.name)
end

-- 403 for a token the pool does not accept (28055, Warning InvalidToken).
function M.token_invalid(host)
  return page(403, "403 - Forbidden: Access is denied.",
    "You do not have permission to view this directory or page using the credentials that you supplied.",
    { ["X-Ms-diagnostics"] = M.diagnostics(28055, "The OAuth token is invalid.", host),
      Warning = '299 ' .. host.name .. ' "InvalidToken"' })
end

-- 500 with IIS's page for a web ticket it cannot read (28032).
function M.ticket_invalid(host)
  return page(500, "500 - Internal server error.",
    "There is a problem with the resource you are looking for, and it cannot be displayed.",
    { ["X-Ms-diagnostics"] = M.diagnostics(28032, "The web ticket is invalid.", host) })
end

-- IIS's own 401: no WWW-Authenticate, so no challenge to answer.
function M.iis_unauthorized()
  return page(401, "401 - Unauthorized: Access is denied due to invalid credentials.",
    "You do not have permission to view this directory or page using the credentials that you supplied.")
end

-- 502 from the reverse proxy in front of a pool that is down.
function M.bad_gateway()
  return page(502, "502 - Web server received an invalid response while acting as a gateway or proxy server.",
    "There is a problem with the page you are looking for, and it cannot be displayed.")
end

-- The plain-HTTP listener's answer to everything: 302 Found to `location`,
-- with an empty body.
function M.found(location)
  return 302, { Location = location, ["Cache-Control"] = "no-cache", Server = "Microsoft-IIS/8.5" }, ""
end

return M
