-- ucwa-sim: the batch resource (BatchingRequests.md, GroupingRequestsInABatch.md,
-- batch_ref.md). POST <app>/batch with a multipart/batching body: each part
-- an application/http request, answered as if it came alone (with the
-- batch's Authorization), the answers in one multipart/batching response in
-- the parts' order. MIME and HTTP are read by the host's multipart_parse
-- (GMime and http-parser, src/multipart.c) and written by multipart_build;
-- a part's path and query arguments are decoded by host.target_decode
-- (GLib's URI reader, sim/target.c), as MHD decodes a request sent alone.
--
-- A part that cannot be read gets its own 400; a batch, an events or a
-- photo request inside a batch gets 400 (the page's limitations); more than
-- MAX_PARTS parts is 429 TooManyRequests and nothing runs.
local host = require "ucwasim.host"
local reply = require "reply"

local M = {}

M.MAX_PARTS = 100 -- "100 requests for a single user across all batches"

local counts = { posts = 0, parts = 0 }
local garbled = {} -- faults for the next batch answers, in order (M.garble)

-- How a garbled answer is spoiled: body, content type -> body, content type.
local GARBLE = {
  ["no-boundary"] = function(body) return body, "multipart/batching" end,
  truncated = function(body, ctype) return body:sub(1, #body // 2), ctype end,
  ["broken-part"] = function(body, ctype) return (body:gsub("HTTP/1%.1 ", "HTXP/1.1 ", 1)), ctype end,
  ["not-multipart"] = function(body) return body, "application/json" end,
}

local REASONS = { [200] = "OK", [201] = "Created", [204] = "No Content", [400] = "Bad Request",
  [401] = "Unauthorized", [403] = "Forbidden", [404] = "Not Found", [405] = "Method Not Allowed",
  [409] = "Conflict", [410] = "Gone", [412] = "Precondition Failed", [415] = "Unsupported Media Type",
  [428] = "Precondition Required", [429] = "Too Many Requests", [500] = "Internal Server Error" }

-- The answer to one part as a table for multipart_build.
local function part_answer(status, headers, body)
  return { status = status, reason = REASONS[status] or "Answer", headers = headers or {}, body = body or "" }
end

local function refuse(ctx, status, code, subcode, message)
  return part_answer(reply.error(ctx, status, code, subcode, message))
end

-- Runs one parsed part for application `app` of batch context `ctx`.
local function run_part(ctx, part)
  local applications = require "applications" -- (it requires this module)
  if part.error then
    return refuse(ctx, 400, "BadRequest", nil, "The batch part could not be read: " .. part.error)
  end
  if not part.path then
    return refuse(ctx, 400, "BadRequest", nil, "The batch part has no request target path.")
  end
  -- decoded as MHD decodes a request sent alone (GLib's URI reader: sim/target.c)
  local path, query = host.target_decode(part.path, part.query)
  if not path then -- (answered in the part's own representation)
    return refuse(reply.context(part), 400, "BadRequest", nil,
      "The batch part's target cannot be read: " .. query .. ".")
  end
  local lpath = path:lower()
  if lpath:match("/batch$") or lpath:match("/events$") or lpath:find("/photos/", 1, true) then
    return refuse(ctx, 400, "BadRequest", nil, "A batch cannot contain batch, events or photo requests.")
  end
  local headers = part.headers
  headers.authorization = headers.authorization or ctx.req.headers.authorization
  local sub = { method = part.method, path = path, version = "HTTP/1.1", listener = ctx.req.listener,
                query = query, headers = headers, body = part.body }
  local sctx = reply.context(sub)
  sctx.host = ctx.host
  local ok, status, h, body = xpcall(applications.route, debug.traceback, sctx)
  if not ok then
    io.stderr:write("ucwa-sim: ", tostring(status), "\n")
    return refuse(sctx, 500, "ServiceFailure", nil, "Internal Server Error.")
  end
  if type(status) ~= "number" then -- (a held request: nothing here holds one)
    return refuse(sctx, 400, "BadRequest", nil, "This request cannot be batched.")
  end
  return part_answer(status, h, body)
end

-- POST <app>/batch
function M.route(ctx)
  local req = ctx.req
  local ct = req.headers["content-type"] or ""
  if not ct:lower():match("^%s*multipart/batching") then
    return reply.error(ctx, 415, "UnsupportedMediaType", nil, "A batch is multipart/batching.")
  end
  if not host.multipart_parse then
    return reply.error(ctx, 501, "ServiceFailure", nil, "This simulator has no multipart parser.")
  end
  local parts, err = host.multipart_parse(req.body, ct, "request")
  if not parts then
    return reply.error(ctx, 400, "BadRequest", nil, "The batch could not be read: " .. err)
  end
  if #parts == 0 then return reply.error(ctx, 400, "BadRequest", nil, "The batch has no parts.") end
  if #parts > M.MAX_PARTS then
    return reply.error(ctx, 429, "TooManyRequests", nil, "There are too many outstanding HTTP operations.")
  end
  counts.posts = counts.posts + 1
  counts.parts = counts.parts + #parts
  local answers = {}
  for i, part in ipairs(parts) do answers[i] = run_part(ctx, part) end
  local body, ctype = host.multipart_build(answers, "response")
  local g = table.remove(garbled, 1)
  if g then body, ctype = GARBLE[g](body, ctype) end
  return 200, reply.headers(ctype), body
end

-- The control API's POST /_sim/batching {garble = kind, count = n}: the next
-- n batch answers are spoiled (no-boundary, truncated, broken-part: the
-- first part's status line, not-multipart). Returns true, or nil and why.
function M.garble(t)
  if not GARBLE[t.garble] then
    return nil, "garble must be no-boundary, truncated, broken-part or not-multipart"
  end
  local n = tonumber(t.count or 1)
  if not n or n < 1 or n > 100 or n ~= math.floor(n) then return nil, "count must be 1 to 100" end
  for _ = 1, n do garbled[#garbled + 1] = t.garble end
  return true
end

-- For the control API's state dump: batches answered, parts in them.
function M.snapshot()
  return { posts = counts.posts, parts = counts.parts }
end

return M
