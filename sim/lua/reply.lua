-- ucwa-sim: answers to UCWA requests, in the representation the request
-- asked for (JSON or XML by Accept), and the reader of request bodies.
--
-- Handlers get a context { req=, fmt=, ctype= } and return what the C host
-- takes: status, headers, body (or "suspend" / "drop").  Helpers that may
-- refuse a request (reply.input) return nil and the refusal as a packed
-- answer: `if not input then return table.unpack(refusal) end`.
local cjson = require "cjson.safe"
local fmt = require "formats"

local M = {}

function M.context(req)
  local ctx = { req = req }
  ctx.fmt, ctx.ctype = fmt.negotiate(req.headers.accept)
  return ctx
end

-- The headers of every UCWA answer, plus the content type and `extra`.
local function headers(ctype, extra)
  local h = { ["Cache-Control"] = "no-cache", ["X-Content-Type-Options"] = "nosniff",
    ["X-MS-Server-Fqdn"] = "ucwa-sim.contoso.com", ["Content-Type"] = ctype }
  for k, v in pairs(extra or {}) do
    h[k] = v
  end
  return h
end
M.headers = headers

-- A body that fmt.<kind>_json or fmt.<kind>_xml writes from `...`.
local function as(ctx, status, extra, kind, ...)
  local body = fmt[kind .. (ctx.fmt == "xml" and "_xml" or "_json")](...)
  return status, headers(ctx.ctype, extra), body
end

-- An error body { code, subcode, message }; bag: nil or { parameters=,
-- debugInfo= } (property bags, ErrorsAndInformationalMessages.md).
function M.error(ctx, status, code, subcode, message, extra, bag)
  return as(ctx, status, extra, "error", code, subcode, message, bag)
end

-- A resource (formats.resource).
function M.resource(ctx, status, res, extra)
  return as(ctx, status, extra, "resource", res)
end

-- An event batch (formats.events_json).
function M.events(ctx, batch)
  return as(ctx, 200, nil, "events", batch)
end

function M.no_content(extra)
  return 204, headers(nil, extra), ""
end

function M.created(location)
  return 201, headers(nil, { Location = location }), ""
end

function M.not_found(ctx)
  return M.error(ctx, 404, "NotFound", "ResourceNotFound", "The resource does not exist.")
end

-- 403 for a token without `scope` (a name, or words such as
-- "Conversations.Initiate and Receive").
function M.missing_scope(ctx, scope)
  return M.error(ctx, 403, "Forbidden", nil,
    "The token lacks the " .. scope .. (scope:find(" and ", 1, true) and " scopes." or " scope."))
end

-- 400 ParameterValidationFailure; `name`, the property at fault, goes in
-- the error's `parameters`.
function M.bad_parameter(ctx, message, name)
  return M.error(ctx, 400, "BadRequest", "ParameterValidationFailure", message, nil,
    name and { parameters = { [name] = message } } or nil)
end

-- Plain JSON (tokens, the control API), encoded by lua-cjson or by `encode`.
function M.json(status, t, extra, encode)
  local h = { ["Content-Type"] = "application/json; charset=utf-8", ["Cache-Control"] = "no-store",
    Pragma = "no-cache" }
  for k, v in pairs(extra or {}) do h[k] = v end
  return status, h, (encode or cjson.encode)(t)
end

local METHOD_ORDER = { "GET", "POST", "PUT", "DELETE" }

local function method_not_allowed(ctx, allow)
  return M.error(ctx, 405, "MethodNotAllowed", nil, "The requested HTTP method is not supported for this resource.",
    { Allow = allow })
end

-- Calls handlers[method](...) for the request's method, or answers 405 with
-- the methods `handlers` has in Allow.
function M.by_method(ctx, handlers, ...)
  local h = handlers[ctx.req.method]
  if h then return h(...) end
  local allow = {}
  for _, m in ipairs(METHOD_ORDER) do
    if handlers[m] then allow[#allow + 1] = m end
  end
  return method_not_allowed(ctx, table.concat(allow, ", "))
end

-- Calls fn(...) if the request's method is `method`, else answers 405.
function M.only(ctx, method, fn, ...)
  if ctx.req.method == method then return fn(...) end
  return method_not_allowed(ctx, method)
end

-- A resource that only answers GET: build() makes it (200, headers `extra`).
function M.get_only(ctx, build, extra)
  if ctx.req.method ~= "GET" then return method_not_allowed(ctx, "GET") end
  return M.resource(ctx, 200, build(), extra)
end

-- The request body as UCWA input (JSON or XML): a table of name -> value,
-- or nil and the refusal.  optional: an empty body is an empty input.
function M.input(ctx, optional)
  local req = ctx.req
  if req.too_large then
    return nil, { M.error(ctx, 413, "EntityTooLarge", nil, "The request is too large.") }
  end
  if req.body == "" then
    if optional then return {} end
    return nil, { M.error(ctx, 400, "BadRequest", nil, "A request body is required.") }
  end
  local ct = (req.headers["content-type"] or ""):lower()
  if ct ~= "" and not ct:find("json", 1, true) and not ct:find("xml", 1, true) then
    return nil, { M.error(ctx, 415, "UnsupportedMediaType", nil, "The content-type is not supported.") }
  end
  if ct == "" then
    ct = req.body:match("^%s*<") and "application/xml" or "application/json"
  end
  local input, msg = fmt.parse_input(req.body, ct)
  if not input then
    return nil, { M.error(ctx, 400, "BadRequest", nil, "The request body could not be read: " .. msg) }
  end
  return input
end

-- input[name], names compared without case (UCWA's are case-insensitive).
function M.field(input, name)
  local v = input[name]
  if v == nil then
    local lname = name:lower()
    for k, x in pairs(input) do
      if type(k) == "string" and k:lower() == lname then
        return x
      end
    end
  end
  return v
end

return M
