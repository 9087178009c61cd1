-- ucwa-sim: the entry points of the C host (main.c) and the top of the URL
-- space.  main.c calls init(options, base_url) once, handle(req) for each
-- request, and tick() from its loop for the timers.
--
--   /autodiscover/...root, /.../oauth/user, /autodiscover/xframe  here
--   /WebTicket/oauth/token                                         auth.lua
--   /ucwa/{oauth,anonymous}/v1/applications...                     applications.lua
--   /_sim/...                                                      control.lua
--
-- Injected faults (faults.lua) apply to every request but the control API's.
local host = require "ucwasim.host"
local applications = require "applications"
local auth = require "auth"
local config = require "config"
local control = require "control"
local directory = require "directory"
local faults = require "faults"
local fmt = require "formats"
local meetings = require "meetings"
local reply = require "reply"
local stats = require "stats"
local timers = require "timers"

local M = {}

local AUTODISCOVER = "/autodiscover/autodiscoverservice.svc/root"
local USER_PATH = AUTODISCOVER .. "/oauth/user"
local XFRAME_PATH = "/autodiscover/xframe"

local base = ""

local function root(ctx)
  return reply.resource(ctx, 200, fmt.resource("root", base .. AUTODISCOVER)
    :link("user", base .. USER_PATH)
    :link("xframe", base .. XFRAME_PATH))
end

local function user(ctx)
  local tok, refusal = auth.authenticate(ctx.req)
  if not tok then return table.unpack(refusal) end
  return reply.resource(ctx, 200, fmt.resource("user", base .. USER_PATH)
    :link("applications", base .. (tok.anonymous and applications.ANON_PATH or applications.PATH))
    :link("xframe", base .. XFRAME_PATH))
end

local function xframe()
  return 200, { ["Content-Type"] = "text/html; charset=utf-8" },
    "<!DOCTYPE html><html><head><title>XFrame</title></head><body></body></html>"
end

local function route(ctx)
  local path = ctx.req.path
  local lpath = path:lower()
  if lpath == AUTODISCOVER or lpath == AUTODISCOVER .. "/" or path == "/" then
    return reply.only(ctx, "GET", root, ctx)
  elseif lpath == USER_PATH:lower() then
    return reply.only(ctx, "GET", user, ctx)
  elseif lpath == XFRAME_PATH then
    return xframe()
  elseif path == auth.TOKEN_PATH then
    return auth.token_endpoint(ctx.req)
  end
  return applications.route(ctx)
end

-- The answer, or an injected failure.
local function answer(ctx)
  local f = faults.take_failure(ctx.req.path)
  if f then
    return reply.error(ctx, f.status, f.code, f.subcode, "Injected failure.",
      f.retry_after and { ["Retry-After"] = tostring(f.retry_after) } or nil)
  end
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

-- One request, as main.c builds it: { method=, path=, version=, query=,
-- headers= (lowercase names), body=, too_large=, form=, form_bad=, box= }.
function M.handle(req)
  stats.add("requests")
  local ctx = reply.context(req)
  host.log(req.method .. " " .. req.path)
  if req.path == "/_sim" or req.path:sub(1, 6) == "/_sim/" then
    if config.get("no-control") then return reply.not_found(ctx) end
    return control.handle(ctx)
  end
  local ok, status, headers, body = xpcall(answer, debug.traceback, ctx)
  if not ok then
    io.stderr:write("ucwa-sim: ", tostring(status), "\n")
    return reply.error(ctx, 500, "ServiceFailure", nil, "Internal Server Error.")
  end
  return delayed(ctx, status, headers, body)
end

-- Runs due timers; returns the seconds until the next one, or nil.
M.tick = timers.run_due

-- Starts the simulator: `opts` are the Lua-side options (main.c), `base_url`
-- is http(s)://host:port.  Returns true, or nil and a one-line message for a
-- bad option (main.c exits 2).
function M.init(opts, base_url)
  local ok, err = config.load(opts)
  if not ok then return nil, err end
  math.randomseed(os.time(), math.floor(host.now() * 1000))
  local defs
  defs, err = directory.load(config.get("directory"))
  if not defs then return nil, err end
  for _, m in ipairs(defs) do
    ok, err = meetings.add(m)
    if not ok then return nil, "--directory file: " .. err end
  end
  base = base_url
  auth.start(base_url)
  control.start(base_url)
  return true
end

return M
