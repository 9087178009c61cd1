-- A plain HTTP client for the ucwa-sim specs (luasocket), and a normalizer
-- that turns JSON and XML bodies into one model, so both formats are checked
-- with the same assertions:
--   resource: { rel=, href=, props={name=value}, links={rel={href=,title=}|{...}},
--               embedded={rel=model|{model...}} }
--   events:   { links={rel=href}, senders={ {rel=,href=,events={ {type=,link=,in_=,
--               status=,reason=,resource=} } } } }
local http = require "socket.http"
local socket = require "socket"
local ltn12 = require "ltn12"
local cjson = require "cjson"
local lom = require "lxp.lom"

local C = {}

-- helpers.sim's timings, with scenario steps at once
C.defaults = { step_delay = 0 }

-- "name:port" -> address, for the hosts of simulators with a topology: the
-- requests of these specs reach names as a libcurl client with `resolve` does.
C.names = {}

-- Starts a simulator with test-friendly timings (override with opts).
function C.start(opts)
  local o = {}
  for k, v in pairs(C.defaults) do o[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  local sim = require("helpers").sim(o)
  for _, r in ipairs(sim.resolve) do
    local hostport, address = r:match("^(.+):(%d+%.%d+%.%d+%.%d+)$")
    C.names[hostport] = address
  end
  return sim
end

-- Stops a simulator; the test fails unless it exited cleanly.
function C.stop(sim, what)
  local ok, how, code = sim:stop()
  require("luassert").is_true(ok, (what or "simulator exit") .. ": " .. tostring(how) .. " " .. tostring(code))
end

-- Gives the enclosing describe block a simulator started with `opts`, through
-- the hooks `before`/`after` name.  set(sim) receives it, and it must exit
-- cleanly after.  Returns restart(opts) for a test needing other options.
local function use_sim(before, after, set, opts)
  local busted = require "busted"
  local cur
  busted[before](function()
    cur = C.start(opts)
    set(cur)
  end)
  busted[after](function() C.stop(cur) end)
  return function(o)
    cur:stop()
    cur = C.start(o)
    set(cur)
    return cur
  end
end

-- One simulator for the whole block.
function C.use_sim(set, opts) return use_sim("setup", "teardown", set, opts) end
-- A fresh simulator for each test.
function C.use_sim_each(set, opts) return use_sim("before_each", "after_each", set, opts) end

-- Runs body(fmt) in describe("in json") and describe("in xml"): most checks
-- hold for both representations.
function C.each_format(body)
  local describe = require("busted").describe
  for _, fmt in ipairs({ "json", "xml" }) do
    describe("in " .. fmt, function() body(fmt) end)
  end
end

-- A reference sample (helpers.fixtures .. "/samples/<name>.<fmt>") as a model.
function C.sample(name, fmt)
  local helpers = require "helpers"
  return C.model(helpers.read(helpers.fixtures .. "/samples/" .. name .. "." .. fmt), fmt)
end

-- A URL by name as the request goes out: to the host's address, with the
-- name in Host (C.names), as libcurl's resolve does.
local function by_address(url, h)
  local scheme, name, port, rest = url:match("^(https?)://([^:/]+):(%d+)(.*)$")
  local address = name and C.names[name .. ":" .. port]
  if not address then return url end
  local named = false
  for k in pairs(h) do
    if k:lower() == "host" then named = true end
  end
  if not named then h.Host = name .. ":" .. port end
  return scheme .. "://" .. address .. ":" .. port .. rest
end

-- Sends one request (https: not verified; 36-sim_tls checks certificates).
-- Returns status, headers (lowercase names), body.
function C.request(method, url, headers, body)
  local out = {}
  local h = {}
  for k, v in pairs(headers or {}) do h[k] = v end
  if body then h["Content-Length"] = tostring(#body) end
  url = by_address(url, h)
  local req = {
    url = url, method = method, headers = h,
    source = body and ltn12.source.string(body) or nil,
    sink = ltn12.sink.table(out),
  }
  local ok, status, rh
  if url:match("^https:") then
    req.verify, req.protocol = "none", "any"
    ok, status, rh = require("ssl.https").request(req)
  else
    req.redirect = false
    ok, status, rh = http.request(req)
  end
  if not ok then
    return nil, status
  end
  return status, rh, table.concat(out)
end

function C.resolve(base, href)
  if href:match("^https?://") then return href end
  return base .. href
end

---------------------------------------------------------------------------
-- the model

local function json_model(t)
  local m = { rel = t.rel, props = {}, links = {}, embedded = {} }
  for k, v in pairs(t) do
    if k == "_links" then
      for rel, l in pairs(v) do
        if rel == "self" then m.href = l.href else m.links[rel] = l end
      end
    elseif k == "_embedded" then
      for rel, e in pairs(v) do
        if e[1] ~= nil or next(e) == nil then
          local list = {}
          for i, x in ipairs(e) do list[i] = json_model(x) end
          m.embedded[rel] = list
        else
          m.embedded[rel] = json_model(e)
        end
      end
    elseif k ~= "rel" then
      m.props[k] = v
    end
  end
  return m
end
C.json_model = json_model

local function children(node, tag)
  local out = {}
  for _, c in ipairs(node) do
    if type(c) == "table" and (tag == nil or c.tag == tag) then out[#out + 1] = c end
  end
  return out
end
C.children = children

local function text(node)
  local parts = {}
  for _, c in ipairs(node) do
    if type(c) == "string" then parts[#parts + 1] = c end
  end
  return table.concat(parts)
end

-- XML repeats an element per member: the first stays single, a second makes a
-- list.  A single entry is told from a list by its `key` field.
local function add(map, rel, v, key)
  local cur = map[rel]
  if cur == nil then
    map[rel] = v
  elseif cur[key] then
    map[rel] = { cur, v }
  else
    cur[#cur + 1] = v
  end
end

local function xml_model(node)
  local m = { rel = node.attr.rel, href = node.attr.href, props = {}, links = {}, embedded = {} }
  for _, c in ipairs(children(node)) do
    if c.tag == "link" then
      add(m.links, c.attr.rel, { href = c.attr.href, title = c.attr.title }, "href")
    elseif c.tag == "property" then
      if c.attr.name == "rel" then
        m.type = text(c)
      else
        m.props[c.attr.name] = text(c)
      end
    elseif c.tag == "propertyList" then
      local list = {}
      for _, item in ipairs(children(c, "item")) do list[#list + 1] = text(item) end
      m.props[c.attr.name] = list
    elseif c.tag == "resource" then
      add(m.embedded, c.attr.rel, xml_model(c), "props")
    end
  end
  -- In XML the resource's own rel is the "rel" property; the attribute is the link rel.
  if m.type then m.rel = m.type end
  m.type = nil
  return m
end
C.xml_model = xml_model

function C.parse_xml(body)
  local tree, err = lom.parse(body)
  assert(tree, err)
  return tree
end

function C.model(body, fmt)
  if fmt == "xml" then
    return xml_model(C.parse_xml(body))
  end
  return json_model(cjson.decode(body))
end

function C.error_model(body, fmt)
  if fmt == "xml" then
    local tree = C.parse_xml(body)
    assert(tree.tag == "reason", "XML error root is " .. tostring(tree.tag))
    local e = {}
    for _, c in ipairs(children(tree)) do e[c.tag] = text(c) end
    return e
  end
  return cjson.decode(body)
end

function C.events_model(body, fmt)
  local out = { links = {}, senders = {} }
  if fmt == "xml" then
    local tree = C.parse_xml(body)
    assert(tree.tag == "events", "XML events root is " .. tostring(tree.tag))
    out.links.self = tree.attr.href
    for _, c in ipairs(children(tree)) do
      if c.tag == "link" then
        out.links[c.attr.rel] = c.attr.href
      elseif c.tag == "sender" then
        local s = { rel = c.attr.rel, href = c.attr.href, events = {} }
        for _, e in ipairs(children(c)) do
          local ev = { type = e.tag, link = { rel = e.attr.rel, href = e.attr.href, title = e.attr.title },
            status = e.attr.status }
          for _, x in ipairs(children(e)) do
            if x.tag == "in" then
              ev.in_ = { rel = x.attr.rel, href = x.attr.href }
            elseif x.tag == "reason" then
              ev.reason = {}
              for _, r in ipairs(children(x)) do ev.reason[r.tag] = text(r) end
            elseif x.tag == "resource" then
              ev.resource = xml_model(x)
            end
          end
          s.events[#s.events + 1] = ev
        end
        out.senders[#out.senders + 1] = s
      end
    end
    return out
  end
  local t = cjson.decode(body)
  for rel, l in pairs(t._links or {}) do out.links[rel] = l.href end
  for _, s in ipairs(t.sender or {}) do
    local ms = { rel = s.rel, href = s.href, events = {} }
    for _, e in ipairs(s.events or {}) do
      local ev = { type = e.type, link = e.link, in_ = e["in"], status = e.status, reason = e.reason }
      if e._embedded then
        local _, r = next(e._embedded)
        ev.resource = json_model(r)
      end
      ms.events[#ms.events + 1] = ev
    end
    out.senders[#out.senders + 1] = ms
  end
  return out
end

-- Flattens a batch: { {sender=, type=, rel=, href=, ...event} ... }
function C.flat(batch)
  local out = {}
  for _, s in ipairs(batch.senders) do
    for _, e in ipairs(s.events) do
      e.sender = s.rel
      out[#out + 1] = e
    end
  end
  return out
end

---------------------------------------------------------------------------
-- a signed-in application

local Session = {}
Session.__index = Session

local ACCEPT = { json = "application/json", xml = "application/xml" }
C.ACCEPT = ACCEPT

function C.token(sim, user, password)
  local status, _, body = C.request("POST", sim.base .. "/WebTicket/oauth/token",
    { ["Content-Type"] = "application/x-www-form-urlencoded" },
    "grant_type=password&username=" .. user .. "&password=" .. (password or "password"))
  assert(status == 200, "token: " .. tostring(status) .. " " .. tostring(body))
  return cjson.decode(body).access_token
end

-- A form field value, percent-encoded.
function C.form_encode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

function C.anon_token(sim, meeting_uri, key)
  local enc = C.form_encode
  local status, _, body = C.request("POST", sim.base .. "/WebTicket/oauth/token",
    { ["Content-Type"] = "application/x-www-form-urlencoded;charset=UTF-8" },
    "grant_type=urn:microsoft.rtc:anonmeeting&password=" .. enc(key)
      .. "&ms_rtc_conferenceuri=" .. enc(meeting_uri))
  assert(status == 200, "anon token: " .. tostring(status) .. " " .. tostring(body))
  return cjson.decode(body).access_token
end

-- Signs in (token, user resource, application) following links from the root.
function C.session(sim, user, fmt, opts)
  opts = opts or {}
  fmt = fmt or "json"
  local s = setmetatable({ sim = sim, fmt = fmt, base = sim.base }, Session)
  s.token = opts.token or C.token(sim, user)
  local _, _, rb = C.request("GET", sim.url, { Accept = ACCEPT[fmt] })
  local root = C.model(rb, fmt)
  local status, _, ub = s:request("GET", root.links.user.href)
  assert(status == 200, "user: " .. tostring(status))
  local u = C.model(ub, fmt)
  local input = opts.input or { userAgent = "sim-spec/1.0", endpointId = "ep-" .. math.random(1, 1e9),
    culture = "en-US" }
  local abody = fmt == "xml" and C.xml_input(input) or cjson.encode(input)
  local astatus, ah, ab = s:request("POST", u.links.applications.href, abody)
  assert(astatus == 201, "application: " .. tostring(astatus) .. " " .. tostring(ab))
  s.app_headers = ah
  s.app = C.model(ab, fmt)
  s.events = s.app.links.events.href
  return s
end

local function origin(url)
  return url:match("^(https?://[^/]+)")
end
C.origin = origin

-- Signs in as a client of a real deployment does, following links only:
-- the root (a 302 to HTTPS, `redirect` links), the user resource (on 401 a
-- token from its challenge's token service; `redirect` links to another
-- user resource or root), then the applications resource (a new pool
-- answers 401: a token from its own service).  A token is sent only to the
-- origin whose service issued it.  opts: url (default sim.url), password,
-- input.  Returns a Session on the pool (s.base, s.token: the pool's), with
-- s.trail: every step as "METHOD url -> status".
function C.discover(sim, user, fmt, opts)
  opts = opts or {}
  fmt = fmt or "json"
  local trail, tokens = {}, {}
  local function grant(challenge)
    local href = assert(challenge and challenge:match('MsRtcOAuth href="([^"]+)"'), "no MsRtcOAuth challenge")
    local st, _, b = C.request("POST", href, { ["Content-Type"] = "application/x-www-form-urlencoded" },
      "grant_type=password&username=" .. C.form_encode(user)
        .. "&password=" .. C.form_encode(opts.password or "password"))
    trail[#trail + 1] = "POST " .. href .. " -> " .. tostring(st)
    assert(st == 200, "token from " .. href .. ": " .. tostring(st) .. " " .. tostring(b))
    tokens[origin(href)] = cjson.decode(b).access_token
  end
  local function call(method, url, body)
    for attempt = 1, 2 do
      local h = { Accept = ACCEPT[fmt] }
      local tok = tokens[origin(url)]
      if tok then h.Authorization = "Bearer " .. tok end
      if body then h["Content-Type"] = fmt == "xml" and "application/xml" or "application/json" end
      local st, rh, b = C.request(method, url, h, body)
      trail[#trail + 1] = method .. " " .. url .. " -> " .. tostring(st)
      if st ~= 401 or attempt == 2 then return st, rh, b end
      grant(rh["www-authenticate"])
    end
  end
  local function get(url)
    local st, rh, b = call("GET", url)
    if st == 302 then -- HTTP to HTTPS
      local status, _, body = call("GET", rh.location)
      st, b = status, body
    end
    assert(st == 200, "GET " .. url .. ": " .. tostring(st) .. " " .. tostring(b))
    return C.model(b, fmt)
  end
  local root = get(opts.url or sim.url)
  for _ = 1, 5 do
    if not root.links.redirect then break end
    root = get(root.links.redirect.href)
  end
  local user_res = get(root.links.user.href)
  for _ = 1, 5 do
    if user_res.links.applications then break end
    local r = user_res.links.redirect.href
    if not r:match("/oauth/user") then r = get(r).links.user.href end
    user_res = get(r)
  end
  local apps = user_res.links.applications.href
  local input = opts.input or { userAgent = "sim-spec/1.0", endpointId = "ep-" .. math.random(1, 1e9),
    culture = "en-US" }
  local st, ah, ab = call("POST", apps, fmt == "xml" and C.xml_input(input) or cjson.encode(input))
  assert(st == 201, "application: " .. tostring(st) .. " " .. tostring(ab))
  local s = setmetatable({ sim = sim, fmt = fmt, base = origin(apps), token = tokens[origin(apps)],
    trail = trail, tokens = tokens, applications = apps }, Session)
  s.app_headers = ah
  s.app = C.model(ab, fmt)
  s.events = s.app.links.events.href
  return s
end

function C.xml_input(t)
  local parts = { '<?xml version="1.0" encoding="utf-8"?>'
    .. '<input xmlns="http://schemas.microsoft.com/rtc/2012/03/ucwa">' }
  for k, v in pairs(t) do
    parts[#parts + 1] = '<property name="' .. k .. '">' .. tostring(v):gsub("&", "&amp;"):gsub("<", "&lt;")
      .. "</property>"
  end
  parts[#parts + 1] = "</input>"
  return table.concat(parts)
end

function Session:request(method, href, body, ctype, extra)
  local h = { Accept = ACCEPT[self.fmt], Authorization = "Bearer " .. self.token }
  if body then
    h["Content-Type"] = ctype or (self.fmt == "xml" and "application/xml" or "application/json")
  end
  for k, v in pairs(extra or {}) do h[k] = v end
  return C.request(method, C.resolve(self.base, href), h, body)
end

function Session:get(href)
  local status, h, body = self:request("GET", href)
  if status == 200 then return C.model(body, self.fmt), status, h end
  return nil, status, body
end

function Session:post(href, t)
  local body
  if type(t) == "table" then
    body = self.fmt == "xml" and C.xml_input(t) or cjson.encode(t)
  else
    body = t
  end
  return self:request("POST", href, body)
end

-- One P-GET on the current events link; moves to the next link on 200.
function Session:pget(query)
  local href = self.events
  if query then href = href .. "&" .. query end
  local status, _, body = self:request("GET", href)
  if status ~= 200 then return nil, status, body end
  local batch = C.events_model(body, self.fmt)
  self.last_events = self.events
  self.events = batch.links.next or batch.links.resume or batch.links.resync or self.events
  return batch, status, body
end

-- Starts a P-GET (JSON) on its own connection without waiting for it, so a
-- test can hold several at once.  Returns the socket (see C.raw_receive).
function Session:raw_pget(query)
  return C.raw_send(self.base, "GET", self.events .. "&" .. query,
    { Authorization = "Bearer " .. self.token, Accept = "application/json" })
end

-- P-GETs until `pred(event)` matches an event (deadline in seconds).
-- Returns the event and every event seen so far.
function Session:wait_event(pred, secs)
  local seen = {}
  self.backlog = self.backlog or {}
  local deadline = socket.gettime() + (secs or 5)
  while true do
    while #self.backlog > 0 do
      local e = table.remove(self.backlog, 1)
      seen[#seen + 1] = e
      if pred(e) then return e, seen end
    end
    if socket.gettime() > deadline then break end
    local batch, status = self:pget("timeout=0.3")
    assert(batch, "P-GET failed: " .. tostring(status))
    for _, e in ipairs(C.flat(batch)) do self.backlog[#self.backlog + 1] = e end
  end
  error("no matching event in time; saw " .. #seen .. " events", 2)
end

function C.is(type_, rel, extra)
  return function(e)
    if e.type ~= type_ or e.link.rel ~= rel then return false end
    for k, v in pairs(extra or {}) do
      if k == "in" then
        if not e.in_ or e.in_.rel ~= v then return false end
      elseif e[k] ~= v then
        return false
      end
    end
    return true
  end
end

---------------------------------------------------------------------------
-- raw requests (two at once on one application)

function C.raw_send(base, method, path, headers)
  local hostname, port = base:match("^http://([^:/]+):(%d+)")
  local sock = assert(socket.tcp())
  sock:settimeout(10)
  assert(sock:connect(C.names[hostname .. ":" .. port] or hostname, tonumber(port)))
  local lines = { method .. " " .. path .. " HTTP/1.1", "Host: " .. hostname .. ":" .. port }
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  lines[#lines + 1] = ""
  lines[#lines + 1] = ""
  assert(sock:send(table.concat(lines, "\r\n")))
  return sock
end

-- Reads one response: status, headers, body (nil, "closed" if the server closed).
function C.raw_receive(sock)
  local line, err = sock:receive("*l")
  if not line then return nil, err end
  local status = tonumber(line:match("^HTTP/1%.%d (%d+)"))
  local h = {}
  while true do
    local l = assert(sock:receive("*l"))
    if l == "" then break end
    local k, v = l:match("^([^:]+):%s*(.*)$")
    if k then h[k:lower()] = v end
  end
  local body = ""
  local len = tonumber(h["content-length"] or 0)
  if len > 0 then body = assert(sock:receive(len)) end
  return status, h, body
end

-- A throw-away self-signed certificate whose SANs name `names` (and
-- 127.0.0.1): returns the folder, cert.pem and key.pem.
C.make_cert = require("helpers").make_cert

-- Waits up to `secs` (default 3) for cond() to answer true; returns its last answer.
function C.eventually(cond, secs)
  local deadline = socket.gettime() + (secs or 3)
  local v = cond()
  while not v and socket.gettime() < deadline do
    socket.sleep(0.02)
    v = cond()
  end
  return v
end

-- The hosts of the pool preset (topology.lua), for certificates.
C.POOL_HOSTS = { "lyncdiscover.contoso.com", "pool2.contoso.com", "pool3.contoso.com", "evil.example" }

-- The hosts of the pool and online presets together, for certificates.
C.DEPLOYMENT_HOSTS = { "lyncdiscover.contoso.com", "pool2.contoso.com", "pool3.contoso.com", "webdir.online.lync.com",
                       "evil.example" }

-- A certificate naming `names` (default C.POOL_HOSTS) for the enclosing
-- describe block (or spec file): made in setup, set(cert, key) gets it; its
-- folder removed in teardown.
function C.use_cert(set, names)
  local busted = require "busted"
  local dir
  busted.setup(function()
    local cert, key
    dir, cert, key = C.make_cert(names or C.POOL_HOSTS)
    set(cert, key)
  end)
  busted.teardown(function() os.execute("rm -rf " .. dir) end)
end

-- One simulator over HTTPS for the enclosing describe block, with a
-- certificate naming `names` (default C.POOL_HOSTS); set(sim, cert) gets it.
function C.use_tls_sim(set, opts, names)
  local busted = require "busted"
  local dir, sim
  busted.setup(function()
    local cert, key
    dir, cert, key = C.make_cert(names or C.POOL_HOSTS)
    local o = { cert = cert, key = key }
    for k, v in pairs(opts or {}) do o[k] = v end
    sim = C.start(o)
    set(sim, cert)
  end)
  busted.teardown(function()
    C.stop(sim)
    os.execute("rm -rf " .. dir)
  end)
end

function C.path_of(href)
  return href:gsub("^https?://[^/]+", "")
end

return C
