-- ucwa-sim: the entry points of the C host (main.c) and the top of the URL
-- space.  main.c calls configure(options) (the listeners to open), then
-- start(ports) (what to print), handle(req) for each request, gone(box)
-- when the client of a held request went away, and tick() from its loop
-- for the timers.
--
--   /autodiscover/...root, /.../oauth/user, /autodiscover/xframe  here
--   /WebTicket/oauthtoken (and /WebTicket/oauth/token)            auth.lua
--   /ucwa/{oauth,anonymous}/v1/applications...                     applications.lua
--   /_sim/...                                                      control.lua
--
-- Each request belongs to the host of the listener it came in on
-- (hosts.lua); a plain-HTTP listener beside HTTPS answers everything with a
-- 302 to HTTPS.  Injected faults (faults.lua) apply to every request but
-- the control API's.
local host = require "ucwasim.host"
local applications = require "applications"
local auth = require "auth"
local config = require "config"
local console = require "console"
local control = require "control"
local credentials = require "credentials"
local directory = require "directory"
local events = require "events"
local faults = require "faults"
local fmt = require "formats"
local hosts = require "hosts"
local meetings = require "meetings"
local pages = require "pages"
local plants = require "plants"
local reply = require "reply"
local stats = require "stats"
local timers = require "timers"
local topology = require "topology"

local M = {}

local AUTODISCOVER = "/autodiscover/autodiscoverservice.svc/root"
local USER_PATH = AUTODISCOVER .. "/oauth/user"
local XFRAME_PATH = "/autodiscover/xframe"

local single -- one host, no --topology

-- "?originalDomain=..." when the request carried one (hybrid redirects do):
-- the links of the answer carry it on.
local function domain_suffix(req)
  local d = req.query.originalDomain
  return d and ("?originalDomain=" .. fmt.urlencode(d)) or ""
end

local function root(ctx)
  local h, q = ctx.host, domain_suffix(ctx.req)
  local res = fmt.resource("root", h.base .. AUTODISCOVER .. q)
  if h.root then
    -- a redirect link only (RootURL.md, step 5)
    local target = hosts.get(h.root.redirect)
    local url = target and (target.base .. AUTODISCOVER) or h.root.redirect
    if h.root.query then url = url .. (url:find("?", 1, true) and "&" or "?") .. h.root.query end
    return reply.resource(ctx, 200, res:link("redirect", url))
  end
  return reply.resource(ctx, 200, res
    :link("user", plants.href("user", h.base .. USER_PATH .. q, h))
    :link("xframe", h.base .. XFRAME_PATH))
end

-- The home pool of a token's identity: the user's, or for a guest the
-- meeting organizer's (RootURL.md, anonymous meeting join).
local function home_of(tok)
  if tok.anonymous then
    local m = meetings.get(tok.meeting)
    return hosts.home(m and m.organizer or "")
  end
  return hosts.home(tok.identity.username)
end

local function user(ctx)
  local h = ctx.host
  local tok, refusal = auth.authenticate(ctx.req, h)
  if not tok then return table.unpack(refusal) end
  local home = home_of(tok)
  local res = fmt.resource("user", h.base .. USER_PATH .. domain_suffix(ctx.req))
  if home == h or h.user == "link" then
    res:link("applications", plants.href("applications",
      home.base .. (tok.anonymous and applications.ANON_PATH or applications.PATH), h))
  else
    -- homed on another pool: its user resource (or its root, without /oauth/user)
    res:link("redirect", home.base .. (h.user == "redirect" and USER_PATH or AUTODISCOVER))
  end
  return reply.resource(ctx, 200, res:link("xframe", h.base .. XFRAME_PATH))
end

local function xframe()
  return 200, { ["Content-Type"] = "text/html; charset=utf-8" },
    "<!DOCTYPE html><html><head><title>XFrame</title></head><body></body></html>"
end

-- X-MS-RequiresMinResourceVersion above what the host honours (Versioning.md).
local function version_refused(ctx)
  local v = ctx.req.headers["x-ms-requiresminresourceversion"]
  local want = v and tonumber(v)
  return want ~= nil and want > ctx.host.max_version
end

local function api_version_error(ctx)
  return reply.error(ctx, 404, "NotFound", "APIVersionNotSupported",
    "The requested resource version is not supported.")
end

local function route(ctx)
  local path = ctx.req.path
  local lpath = path:lower()
  if auth.is_token_path(path) then
    return auth.token_endpoint(ctx.req, ctx.host)
  end
  if version_refused(ctx) then return api_version_error(ctx) end
  if lpath == AUTODISCOVER or lpath == AUTODISCOVER .. "/" or path == "/" then
    return reply.only(ctx, "GET", root, ctx)
  elseif lpath == USER_PATH:lower() then
    return reply.only(ctx, "GET", user, ctx)
  elseif lpath == XFRAME_PATH then
    return xframe()
  end
  return applications.route(ctx)
end

-- The answer to an injected failure `f` (faults.lua).
local function failure(ctx, f)
  local h = ctx.host
  if f.kind == "token-invalid" then
    return pages.token_invalid(h)
  elseif f.kind == "ticket-invalid" then
    return pages.ticket_invalid(h)
  elseif f.kind == "iis-401" then
    return pages.iis_unauthorized()
  elseif f.kind == "pool-down" then
    return pages.bad_gateway()
  elseif f.kind == "api-version" then
    return api_version_error(ctx)
  end
  local extra = {}
  for k, v in pairs(f.headers or {}) do extra[k] = v end
  if f.retry_after then extra["Retry-After"] = tostring(f.retry_after) end
  return reply.error(ctx, f.status, f.code, f.subcode, f.message or "Injected failure.", extra,
    (f.parameters or f.debugInfo) and { parameters = f.parameters, debugInfo = f.debugInfo } or nil)
end

-- The answer, or an injected failure.
local function answer(ctx)
  local req = ctx.req
  local f = faults.take_failure(req.path, ctx.host, req.headers.authorization ~= nil)
  if f then return failure(ctx, f) end
  return route(ctx)
end

-- Holds an answer for an injected delay: suspended, answered by a timer.
local function delayed(ctx, status, headers, body)
  if status == "suspend" or status == "drop" then return status end
  local secs = faults.take_delay(ctx.req.path)
  if not secs then return status, headers, body end
  local box = ctx.req.box
  timers.after(secs, function() host.respond(box, status, headers, body) end)
  return "suspend"
end

-- The query string again, from the parsed arguments (names in order).
local function query_string(q)
  local names = {}
  for k in pairs(q) do names[#names + 1] = k end
  if #names == 0 then return "" end
  table.sort(names)
  for i, k in ipairs(names) do
    names[i] = fmt.urlencode(k) .. (q[k] ~= "" and ("=" .. fmt.urlencode(q[k])) or "")
  end
  return "?" .. table.concat(names, "&")
end

local function path_escape(path)
  return (path:gsub("[^%w%-%._~/!$&'()*+,;=:@%%]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- A request on a host's plain-HTTP listener: counted, then sent to HTTPS.
local function plain_http(req, h)
  if auth.is_token_path(req.path) and req.method == "POST" then
    auth.count_grant(req, h, true)
  end
  return pages.found(h.base .. path_escape(req.path) .. query_string(req.query))
end

-- Host: naming another host of the topology than the listener's.
local function misdirected(req, h)
  local name = (req.headers.host or ""):match("^%[?([^%]:]+)")
  local named = name and hosts.get(name)
  return named ~= nil and named ~= h
end

local function too_large(ctx)
  if auth.is_token_path(ctx.req.path) then
    return reply.json(413, { error = "invalid_request", error_description = "the request body is too large" })
  end
  return reply.error(ctx, 413, "EntityTooLarge", nil, "The request is too large.")
end

-- One request, as main.c builds it: { method=, path=, version=, listener=,
-- query=, headers= (lowercase names), body=, too_large=, form=, form_bad=,
-- too_many_fields=, box= }.
function M.handle(req)
  stats.add("requests")
  local h, insecure = hosts.of(req)
  local ctx = reply.context(req)
  ctx.host = h
  if host.verbose then host.log(h.name .. " " .. req.method .. " " .. req.path) end
  if req.path == "/_sim" or req.path:sub(1, 6) == "/_sim/" then
    if config.get("no-control") then return reply.not_found(ctx) end
    return control.handle(ctx)
  end
  credentials.request(h, req.headers.authorization and auth.issuer(req), insecure)
  if insecure then return plain_http(req, h) end
  if not single and misdirected(req, h) then
    return reply.error(ctx, 421, "MisdirectedRequest", nil, "This host does not serve " .. req.headers.host .. ".")
  end
  if req.too_large then return too_large(ctx) end
  local ok, status, headers, body = xpcall(answer, debug.traceback, ctx)
  if not ok then
    io.stderr:write("ucwa-sim: ", tostring(status), "\n")
    return reply.error(ctx, 500, "ServiceFailure", nil, "Internal Server Error.")
  end
  return delayed(ctx, status, headers, body)
end

-- The client of a held request went away (main.c closed the connection).
function M.gone(box)
  stats.add("clients_gone")
  events.gone(box)
  console.gone(box)
end

-- Runs due timers; returns the seconds until the next one, or nil.
M.tick = timers.run_due

-- Checks the options (`opts`, from main.c) and the topology; returns the
-- listeners to open ({ {address=, port=, tls=} ... }), or nil and a
-- one-line message for a bad option (main.c exits 2).
function M.configure(opts)
  local ok, err = config.load(opts)
  if not ok then return nil, err end
  math.randomseed(os.time(), math.floor(host.now() * 1000))
  local desc
  desc, err = topology.load(config.get("topology"), opts.host, opts.port)
  if not desc then return nil, err end
  single = desc.single
  local defs
  defs, err = directory.load(config.get("directory"))
  if not defs then return nil, err end
  for _, m in ipairs(defs) do
    ok, err = meetings.add(m)
    if not ok then return nil, "--directory file: " .. err end
  end
  return hosts.configure(desc, opts.tls, config.get("max-version"))
end

-- The listeners are open on `ports` (in configure's order): starts the
-- services; returns what main.c prints (the root URL, the hosts).
function M.start(ports)
  local text = hosts.start(ports, AUTODISCOVER)
  auth.start(not single)
  control.start(hosts.discovery().base)
  return text
end

return M
