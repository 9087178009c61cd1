-- The driver of fuzz_sim (fuzz_sim.c): one simulator a input, without the
-- network.  A fake ucwasim.host (a clock the driver moves, counted random
-- bytes, held requests checked when answered), the modules of sim/lua with
-- a topology (four hosts, each with a plain-HTTP listener too), a bot signed
-- in on the pool, then the input's requests handed to server.handle as
-- main.c builds them, the timers run between them and long after the last.
-- Any error that escapes, and any answer the C host would refuse, is a
-- finding (fuzz_sim.c aborts).
--
-- The input: requests separated by a line "--".  A request: "[@N ]METHOD
-- TARGET" (N: the listener, default 3, the pool's; TARGET: path?query),
-- header lines "Name: value", an empty line, the body.  In it "$T" stands
-- for the bot's token, "$A" for its application's path, "$E" for its event
-- channel's path and query.
local M = {}

local LISTENERS = 8 -- the pool topology, with TLS: each host's HTTPS and plain-HTTP listener
local POOL = 3      -- pool2.contoso.com over HTTPS
local MAX_EVENTS = 1000 -- synthetic events a control request may queue (a million is a benchmark, not a bug)

local clock, random_count = 1000, 0
local held, nheld = {}, 0 -- box -> true while suspended

local function check_answer(status, headers, body)
  assert(math.type(status) == "integer" and status >= 100 and status <= 599, "bad status " .. tostring(status))
  assert(headers == nil or type(headers) == "table", "headers must be a table")
  for k, v in pairs(headers or {}) do
    assert(type(k) == "string", "header name " .. tostring(k))
    assert(type(v) == "string" or type(v) == "number" or type(v) == "table", "header " .. k .. " is a " .. type(v))
    assert(type(v) ~= "string" or not v:find("[\r\n]"), "header " .. k .. " holds a line break")
  end
  assert(body == nil or type(body) == "string", "body must be a string")
end

local function release(box)
  if not held[box] then return false end
  held[box] = nil
  nheld = nheld - 1
  return true
end

package.loaded["ucwasim.host"] = {
  now = function() return clock end,
  wallclock = function() return math.floor(clock * 1000) end,
  wall_seconds = function() return clock end,
  random = function(n)
    assert(math.type(n) == "integer" and n >= 1 and n <= 64, "random: 1..64 bytes")
    random_count = random_count + 1
    return (string.format("%016x", random_count):rep(8)):sub(1, 2 * n)
  end,
  respond = function(box, status, headers, body)
    if not held[box] then return false end
    check_answer(status, headers, body)
    return release(box)
  end,
  drop = release,
  suspended = function() return nheld end,
  connections = function() return nheld + 1 end,
  log = function() end,
}

-- The simulator reports the errors it catches (a handler's, a timer's) on
-- stderr and answers 500: each is a finding here.
-- luacheck: push ignore 122
io.stderr = { write = function(_, ...) error("simulator error: " .. table.concat({ ... }), 0) end }
-- luacheck: pop

local cjson = require "cjson.safe"
local server = require "server"

-- Percent-decoding as main.c's unescape (%00 stays) and MHD's arguments (+ is a space).
local function unescape(s, plus)
  if plus then s = s:gsub("+", " ") end
  return (s:gsub("%%(%x%x)", function(h)
    if h == "00" then return "%00" end
    return string.char(tonumber(h, 16))
  end))
end

local function pairs_of(s, plus)
  local t, n = {}, 0
  for item in s:gmatch("[^&]+") do
    local k, v = item:match("^([^=]*)=?(.*)$")
    t[unescape(k, plus)] = unescape(v, plus)
    n = n + 1
  end
  return t, n
end

local box_seq = 0

-- A request as main.c builds it, and its answer checked.
local function call(listener, method, target, headers, body)
  local path, query = target:match("^([^?]*)%??(.*)$")
  local req = { method = method, path = unescape(path), version = "HTTP/1.1", listener = listener,
    query = pairs_of(query, true), headers = headers, body = body }
  local lpath = req.path:lower()
  local token_route = lpath:sub(1, 11) == "/webticket/"
  local form = (headers["content-type"] or ""):lower():sub(1, 33) == "application/x-www-form-urlencoded"
  local cap = (token_route or form) and 64 * 1024 or lpath:sub(1, 5) == "/_sim" and 256 * 1024 or 4 * 1024 * 1024
  if #body > cap then
    req.too_large, req.body = true, body:sub(1, cap)
  elseif token_route and form then
    local n
    req.form, n = pairs_of(body, true)
    if n > 64 then req.form, req.form_bad, req.too_many_fields = {}, true, true end
  end
  box_seq = box_seq + 1
  req.box = { n = box_seq }
  local status, h, b = server.handle(req)
  if status == "suspend" then
    held[req.box] = true
    nheld = nheld + 1
  elseif status ~= "drop" then
    check_answer(status, h, b)
  end
  return status, h, b
end

local function tick(dt)
  clock = clock + dt
  server.tick()
end

-- A control request that would queue more synthetic events than MAX_EVENTS.
local function too_many_events(target, body)
  if not target:find("/events", 1, true) or target:sub(1, 5) ~= "/_sim" then return false end
  local t = cjson.decode(body)
  return type(t) == "table" and tonumber(t.count) ~= nil and tonumber(t.count) > MAX_EVENTS
end

local function parse_request(text, vars)
  text = text:gsub("%$([TAE])", vars)
  local first, rest = text:match("^([^\n]*)\n?(.*)$")
  local listener, method, target = first:match("^@(%d+) (%S+) (%S+)")
  if not listener then
    method, target = first:match("^(%S+) (%S+)")
  end
  if not method then return nil end
  local headers = {}
  local head, body = rest:match("^(.-)\n\n(.*)$")
  if not head then head, body = rest, "" end
  for line in head:gmatch("[^\n]+") do
    local k, v = line:match("^([^:]+):%s*(.*)$")
    if k then headers[k:lower()] = v end
  end
  listener = math.min(math.max(tonumber(listener) or POOL, 1), LISTENERS)
  return listener, method, target, headers, body
end

-- Runs one input.
function M.run(input)
  local listeners = assert(server.configure({ host = "127.0.0.1", port = 0, tls = true, topology = "pool",
    ["step-delay"] = "0.01", ["min-timeout"] = "0.1", ["min-aggregation"] = "0", ["pget-timeout"] = "5",
    ["app-idle"] = "60", ["resume-after"] = "30", ["typing-timeout"] = "1" }))
  assert(#listeners == LISTENERS, "the pool topology has " .. #listeners .. " listeners")
  local ports = {}
  for i = 1, LISTENERS do ports[i] = 40000 + i end
  server.start(ports)
  math.randomseed(1, 2)
  local _, _, tb = call(POOL, "POST", "/WebTicket/oauthtoken",
    { ["content-type"] = "application/x-www-form-urlencoded" },
    "grant_type=password&username=bot@contoso.com&password=password")
  local token = assert(cjson.decode(tb)).access_token
  local _, _, ab = call(POOL, "POST", "/ucwa/oauth/v1/applications",
    { authorization = "Bearer " .. token, ["content-type"] = "application/json" },
    '{"userAgent":"fuzz","endpointId":"fuzz-1","culture":"en-US"}')
  local app = assert(cjson.decode(ab))
  local vars = { T = token, A = app._links.self.href, E = app._links.events.href }
  local n = 0
  for text in (input .. "\n--\n"):gmatch("(.-)\n%-%-\n") do
    n = n + 1
    if n > 16 then break end
    local listener, method, target, headers, body = parse_request(text, vars)
    if listener and not too_many_events(target, body) then
      call(listener, method, target, headers, body)
      tick(0.05)
    end
  end
  for _, dt in ipairs({ 0.5, 2, 10, 40, 100, 1000, 100000 }) do
    tick(dt)
  end
end

return M
